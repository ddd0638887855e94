use crate::error::Error;

/// The longest pool or member name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Checks a pool or member name before it reaches any balancer's protocol.
///
/// Rejects empty names, names over [`MAX_NAME_LEN`] bytes, whitespace,
/// control characters (CR, LF, NUL, …), `;`, `\`, `#` and quotes: the
/// characters that split or comment out commands in HAProxy's runtime API
/// and nginx's configuration, or that break out of a form field. `what` is
/// `"pool"` or `"member"`; `balancer` is named in the error.
///
/// ```
/// assert!(lb_core::validate_name("edge", "member", "node2").is_ok());
/// let e = lb_core::validate_name("edge", "member", "node2;show info").unwrap_err();
/// assert_eq!(e.to_string(), r#"edge: invalid member name "node2;show info": ';' is not allowed"#);
/// ```
///
/// # Errors
///
/// [`Error::InvalidInput`], showing the offending name escaped.
pub fn validate_name(balancer: &str, what: &str, name: &str) -> Result<(), Error> {
    let fail = |why: String| {
        Err(Error::invalid_input(
            balancer,
            format!("invalid {what} name \"{}\": {why}", escape_name(name)),
        ))
    };
    if name.is_empty() {
        return fail("it is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return fail(format!(
            "it is {} bytes long (at most {MAX_NAME_LEN})",
            name.len()
        ));
    }
    for c in name.chars() {
        if c.is_control() {
            return fail(format!("control character {:?} is not allowed", c));
        }
        if c.is_whitespace() {
            return fail("whitespace is not allowed".into());
        }
        if matches!(c, ';' | '\\' | '#' | '"' | '\'' | '`') {
            return fail(format!("'{c}' is not allowed"));
        }
    }
    Ok(())
}

/// `name` with control characters, quotes and backslashes escaped, cut to
/// 80 characters, for error messages.
pub fn escape_name(name: &str) -> String {
    const SHOWN: usize = 80;
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if i == SHOWN {
            out.push_str(&format!("…({} bytes in all)", name.len()));
            break;
        }
        out.extend(c.escape_debug());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in [
            "node2",
            "app",
            "10.0.0.1:8080",
            "[::1]:80",
            "http://127.0.0.1:8081",
            "be_app-v2.x",
            "é",
        ] {
            validate_name("lb", "member", n).unwrap();
        }
        validate_name("lb", "member", &"a".repeat(255)).unwrap();
    }

    #[test]
    fn rejects_hostile_names_and_shows_them_escaped() {
        let cases = [
            ("", "is empty"),
            ("a b", "whitespace"),
            ("a\tb", "control character"),
            ("node2\nshow info", "control character"),
            ("node2\r", "control character"),
            ("a\0b", "control character"),
            ("node2;show info", "';'"),
            ("a\\b", "'\\'"),
            ("a#b", "'#'"),
            ("a\"b", "'\"'"),
            ("a'b", "'''"),
            ("a\u{a0}b", "whitespace"),
        ];
        for (name, why) in cases {
            let e = validate_name("edge", "member", name).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, Error::InvalidInput { .. }), "{msg}");
            assert!(msg.starts_with("edge: invalid member name"), "{msg}");
            assert!(msg.contains(why), "{name:?}: {msg}");
            assert!(!msg.contains('\n') && !msg.contains('\0'), "{msg:?}");
        }
        let long = "x".repeat(5000);
        let msg = validate_name("edge", "pool", &long)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("5000 bytes long"), "{msg}");
        assert!(msg.len() < 300, "the message stays short: {}", msg.len());
    }
}
