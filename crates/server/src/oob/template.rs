//! `{name}` templates for the texts and requests that carry a code.
//!
//! One pass, left to right: a value is inserted once and never scanned again
//! (a username containing `{code}` stays literal). A placeholder is `{`,
//! lowercase letters or `_`, `}`; every other brace is literal, so JSON
//! bodies need no escaping of their own braces. Values are escaped for where
//! they go (URL, JSON string, form field). Pure.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986 unreserved characters is encoded in URLs.
const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// How a value is escaped where it is inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// As it is (email text; a body of no known type).
    None,
    /// Percent-encoded (URL path or query).
    Url,
    /// Inside a JSON string: the template supplies the quotes.
    Json,
    /// `application/x-www-form-urlencoded` (`+` for space).
    Form,
}

/// The placeholder at the start of `rest` (just after a `{`): its name and
/// the length through the closing brace.
fn placeholder(rest: &str) -> Option<(&str, usize)> {
    let end = rest.find('}')?;
    let name = &rest[..end];
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')).then_some((name, end + 1))
}

/// Fills `template` with `vars`; unknown placeholders stay as they are
/// (`check` refuses them at start-up).
pub fn render(template: &str, vars: &[(&str, &str)], escape: Escape) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match placeholder(after).and_then(|(name, len)| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (v, len))) {
            Some((value, len)) => {
                push_escaped(&mut out, value, escape);
                rest = &after[len..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn push_escaped(out: &mut String, value: &str, escape: Escape) {
    match escape {
        Escape::None => out.push_str(value),
        Escape::Url => out.extend(utf8_percent_encode(value, URL_VALUE)),
        Escape::Form => out.extend(form_urlencoded_value(value)),
        Escape::Json => {
            let quoted = serde_json::Value::String(value.to_string()).to_string();
            out.push_str(&quoted[1..quoted.len() - 1]);
        }
    }
}

/// Form encoding: spaces as `+`, everything else but unreserved characters
/// percent-encoded.
fn form_urlencoded_value(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(' ')
        .enumerate()
        .flat_map(|(i, part)| (i > 0).then_some("+").into_iter().chain(utf8_percent_encode(part, URL_VALUE)))
}

/// Refuses placeholders not in `allowed` (a typo would otherwise be sent
/// as it is, and the code with it would not).
pub fn check(template: &str, allowed: &[&str], what: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(at) = rest.find('{') {
        rest = &rest[at + 1..];
        if let Some((name, len)) = placeholder(rest) {
            if !allowed.contains(&name) {
                return Err(format!(
                    "{what}: unknown placeholder {{{name}}} (known: {})",
                    allowed.iter().map(|a| format!("{{{a}}}")).collect::<Vec<_>>().join(" ")
                ));
            }
            rest = &rest[len..];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARS: &[(&str, &str)] =
        &[("phone", "+49 151 1234"), ("message", "Code: 123456 \"now\" & {code}"), ("code", "123456")];

    #[test]
    fn plain_substitution_is_single_pass() {
        assert_eq!(
            render("to {phone}: {message}", VARS, Escape::None),
            "to +49 151 1234: Code: 123456 \"now\" & {code}"
        );
        assert_eq!(render("{unknown} {code", VARS, Escape::None), "{unknown} {code");
        assert_eq!(render("{{code}}", VARS, Escape::None), "{123456}");
        assert_eq!(render("", VARS, Escape::None), "");
    }

    #[test]
    fn json_bodies_keep_their_braces_and_escape_values() {
        let body = r#"{"to": "{phone}", "text": "{message}", "n": {"x": 1}}"#;
        let out = render(body, VARS, Escape::Json);
        assert_eq!(out, r#"{"to": "+49 151 1234", "text": "Code: 123456 \"now\" & {code}", "n": {"x": 1}}"#);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["text"], "Code: 123456 \"now\" & {code}");
    }

    #[test]
    fn url_and_form_escaping() {
        assert_eq!(
            render("https://gw/send?to={phone}&m={message}", VARS, Escape::Url),
            "https://gw/send?to=%2B49%20151%201234&m=Code%3A%20123456%20%22now%22%20%26%20%7Bcode%7D"
        );
        assert_eq!(render("to={phone}", VARS, Escape::Form), "to=%2B49+151+1234");
        assert_eq!(render("m={code}", VARS, Escape::Form), "m=123456");
    }

    #[test]
    fn check_names_unknown_placeholders() {
        check(r#"{"to": "{phone}"}"#, &["phone"], "sms.body").unwrap();
        let e = check("{phone} {mesage}", &["phone", "message"], "sms.body").unwrap_err();
        assert!(e.contains("{mesage}") && e.contains("sms.body"), "{e}");
        check("{ not a placeholder } {A}", &[], "x").unwrap();
    }
}
