//! Durations as the inventory and the CLI write them: `250ms`, `30s`,
//! `5m`, `1h`, `30d`, or combinations such as `1m30s`.
//!
//! Drivers read their duration settings with [`serde_opt`]:
//!
//! ```
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     #[serde(default, with = "lb_core::duration::serde_opt")]
//!     timeout: Option<Duration>,
//! }
//! let c: Config = serde_json::from_str(r#"{"timeout": "1m30s"}"#).unwrap();
//! assert_eq!(c.timeout, Some(Duration::from_secs(90)));
//! let c: Config = serde_json::from_str("{}").unwrap();
//! assert_eq!(c.timeout, None);
//! ```

use std::time::Duration;

/// Parses `250ms`, `30s`, `5m`, `2h`, `30d`, `1m30s` (a bare number is
/// seconds; a day is 24 hours).
///
/// ```
/// use std::time::Duration;
/// use lb_core::duration::parse_duration;
/// assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
/// assert_eq!(parse_duration("90d").unwrap(), Duration::from_secs(90 * 86_400));
/// assert!(parse_duration("5 minutes").is_err());
/// ```
///
/// # Errors
///
/// A message saying what is accepted.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (examples: 250ms, 30s, 5m, 1h, 30d, 1m30s)");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = t.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        total += match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86_400),
            _ => return Err(bad()),
        };
    }
    Ok(total)
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if !ms.is_multiple_of(60_000) || ms < 60_000 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}m", ms / 60_000)
    }
}

/// An optional duration written as a string (`"30s"`), for
/// `#[serde(default, with = "lb_core::duration::serde_opt")]` on an
/// `Option<Duration>` field.
pub mod serde_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Reads `"30s"` with [`parse_duration`](super::parse_duration).
    ///
    /// # Errors
    ///
    /// The deserializer's error, saying what is accepted.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }

    /// Writes what [`format_duration`](super::format_duration) gives.
    ///
    /// # Errors
    ///
    /// The serializer's.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_duration(*d)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        for (s, d) in [
            ("5m", Duration::from_secs(300)),
            ("2m", Duration::from_secs(120)),
            ("100ms", Duration::from_millis(100)),
            ("10", Duration::from_secs(10)),
            ("1h2m3s", Duration::from_secs(3723)),
        ] {
            assert_eq!(parse_duration(s).unwrap(), d, "{s}");
        }
        for s in ["", "m", "5x", "-1s", "1.5s", "5 m"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
    }
}
