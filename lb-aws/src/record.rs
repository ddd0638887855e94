//! What undrain must restore, recorded on the target group itself (one
//! tag per deregistered target), so that any lbctl anywhere reads it.
//!
//! Key `lbctl:deregistered:<member>`, value
//! `id=<target id> port=<port> az=<availability zone> at=<unix seconds>`
//! (`port` and `az` left out when the registration had none). ELBv2 tag
//! keys hold at most 128 characters, values 256, from letters, digits,
//! spaces and `_ . : / = + - @`: every target id (instance id, IPv4 or
//! IPv6 address, Lambda ARN) fits that alphabet.

use crate::error::{AwsError, Result};

/// The tag key prefix of a recorded registration.
pub(crate) const TAG_PREFIX: &str = "lbctl:deregistered:";

/// The longest tag key ELBv2 accepts.
const MAX_KEY: usize = 128;

/// One registration, as `RegisterTargets` takes it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registration {
    /// The target id: instance id, IP address or Lambda ARN.
    pub id: String,
    /// The port it was registered on (none for Lambda).
    pub port: Option<i32>,
    /// The availability zone it was registered with (`all` for an
    /// address outside the VPC), when it had one.
    pub az: Option<String>,
    /// When lbctl deregistered it (unix seconds).
    pub at: u64,
}

/// A target's member name: `id:port`, or `id` without a port.
pub(crate) fn member_name(id: &str, port: Option<i32>) -> String {
    match port {
        Some(p) => format!("{id}:{p}"),
        None => id.to_owned(),
    }
}

impl Registration {
    /// Its member name.
    pub(crate) fn member(&self) -> String {
        member_name(&self.id, self.port)
    }

    /// The tag key it is recorded under.
    ///
    /// # Errors
    ///
    /// [`AwsError::Invalid`] when the key would be longer than ELBv2
    /// allows (a very long Lambda ARN).
    pub(crate) fn key(&self) -> Result<String> {
        let k = format!("{TAG_PREFIX}{}", self.member());
        if k.len() > MAX_KEY {
            return Err(AwsError::Invalid(format!(
                "cannot record the registration of {}: the tag key would be {} characters, ELBv2 allows {MAX_KEY}",
                self.member(),
                k.len()
            )));
        }
        Ok(k)
    }

    /// The tag value.
    pub(crate) fn value(&self) -> String {
        let mut v = format!("id={}", self.id);
        if let Some(p) = self.port {
            v.push_str(&format!(" port={p}"));
        }
        if let Some(az) = &self.az {
            v.push_str(&format!(" az={az}"));
        }
        v.push_str(&format!(" at={}", self.at));
        v
    }

    /// Reads a tag; `None` for a tag that is not a record of lbctl's.
    pub(crate) fn parse(key: &str, value: &str) -> Option<Registration> {
        key.strip_prefix(TAG_PREFIX)?;
        let (mut id, mut port, mut az, mut at) = (None, None, None, 0);
        for field in value.split(' ') {
            match field.split_once('=')? {
                ("id", v) => id = Some(v.to_owned()),
                ("port", v) => port = Some(v.parse().ok()?),
                ("az", v) => az = Some(v.to_owned()),
                ("at", v) => at = v.parse().ok()?,
                _ => {}
            }
        }
        let r = Registration {
            id: id.filter(|i| !i.is_empty())?,
            port,
            az,
            at,
        };
        (format!("{TAG_PREFIX}{}", r.member()) == key).then_some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let r = Registration {
            id: "10.0.1.7".into(),
            port: Some(8080),
            az: Some("all".into()),
            at: 1_764_460_000,
        };
        assert_eq!(r.key().unwrap(), "lbctl:deregistered:10.0.1.7:8080");
        assert_eq!(r.value(), "id=10.0.1.7 port=8080 az=all at=1764460000");
        assert_eq!(Registration::parse(&r.key().unwrap(), &r.value()), Some(r));
        let lambda = Registration {
            id: "arn:aws:lambda:eu-west-1:123456789012:function:hook".into(),
            port: None,
            az: None,
            at: 5,
        };
        assert_eq!(
            Registration::parse(&lambda.key().unwrap(), &lambda.value()),
            Some(lambda)
        );
    }

    #[test]
    fn other_tags_and_damaged_records_are_not_records() {
        assert_eq!(Registration::parse("team", "id=x"), None);
        let key = "lbctl:deregistered:10.0.1.7:8080";
        assert_eq!(Registration::parse(key, "port=8080"), None);
        assert_eq!(Registration::parse(key, "id=10.0.1.7 port=http"), None);
        // A value that names another target than its key is not trusted.
        assert_eq!(Registration::parse(key, "id=10.0.1.8 port=8080 at=1"), None);
    }

    #[test]
    fn a_key_too_long_for_elbv2_is_refused() {
        let r = Registration {
            id: format!(
                "arn:aws:lambda:eu-west-1:123456789012:function:{}",
                "f".repeat(64)
            ),
            port: None,
            az: None,
            at: 0,
        };
        let e = r.key().unwrap_err().to_string();
        assert!(e.contains("ELBv2 allows 128"), "{e}");
    }
}
