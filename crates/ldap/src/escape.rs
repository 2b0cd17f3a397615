//! Escaping of user input for LDAP filters (RFC 4515) and DNs (RFC 4514), and
//! reading the first RDN value out of a DN (for group names from `memberOf`).
//!
//! Pure string functions: no I/O. Every username that reaches a filter or a
//! DN goes through one of the two escapers, so input like `*)(uid=*` is a
//! literal value and never filter syntax.

use std::fmt::Write as _;

/// Escapes `s` for use as an assertion value in an LDAP search filter
/// (RFC 4515 §3).
///
/// `*`, `(`, `)`, `\` and NUL must be escaped; this also escapes every other
/// ASCII control character (allowed: any octet may be written as `\XX`).
/// Non-ASCII UTF-8 is left as is (RFC 4515 allows it unescaped).
pub fn escape_filter_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '*' | '(' | ')' | '\\' | '\0' => push_hex(&mut out, c as u8),
            c if c.is_ascii_control() => push_hex(&mut out, c as u8),
            c => out.push(c),
        }
    }
    out
}

/// Escapes `s` for use as an attribute value in a DN's RDN (RFC 4514 §2.4).
///
/// Backslash-escapes `"` `+` `,` `;` `<` `>` `\` and `=` (the last is
/// optional in RFC 4514 but some servers mis-parse it unescaped), a leading
/// `#` or space and a trailing space; writes NUL and other ASCII control
/// characters as `\XX`. Non-ASCII UTF-8 is left as is.
pub fn escape_dn_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_ascii_control() => push_hex(&mut out, c as u8),
            c => out.push(c),
        }
    }
    out
}

fn push_hex(out: &mut String, b: u8) {
    // Writing to a String cannot fail.
    let _ = write!(out, "\\{b:02x}");
}

/// The value of the first attribute of the first RDN of `dn`, unescaped:
/// `cn=vpn-admins,ou=groups,dc=example,dc=org` → `vpn-admins`.
///
/// Used to turn the group DNs of a `memberOf` attribute into group names.
/// Returns `None` for something that is not a DN, and the raw text for a
/// `#`-prefixed BER value (which no directory uses for a group name).
pub fn first_rdn_value(dn: &str) -> Option<String> {
    let (_, rest) = dn.split_once('=')?;
    if rest.starts_with('#') {
        let end = rest.find([',', '+']).unwrap_or(rest.len());
        return Some(rest[..end].to_string());
    }
    let mut bytes = Vec::with_capacity(rest.len());
    let mut it = rest.as_bytes().iter().copied().peekable();
    while let Some(b) = it.next() {
        match b {
            b',' | b'+' => break,
            b'\\' => {
                let first = it.next()?;
                match it.peek().copied() {
                    Some(second) if first.is_ascii_hexdigit() && second.is_ascii_hexdigit() => {
                        it.next();
                        bytes.push((hex_val(first) << 4) | hex_val(second));
                    }
                    _ => bytes.push(first),
                }
            }
            b => bytes.push(b),
        }
    }
    let value = String::from_utf8(bytes).ok()?;
    // Unescaped leading/trailing spaces are insignificant (RFC 4514 §3);
    // escaped ones were pushed the same way, which is fine for names.
    let value = value.trim().to_string();
    if value.is_empty() { None } else { Some(value) }
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4515 §4 examples, written as (value, escaped). The RFC mixes hex
    // case (`\2A`, `\5c`); both are the same octet, we emit lowercase.
    #[test]
    fn rfc4515_section4_examples() {
        assert_eq!(
            escape_filter_value("Parens R Us (for all your parenthetical needs)"),
            r"Parens R Us \28for all your parenthetical needs\29"
        );
        assert_eq!(escape_filter_value("*"), r"\2a");
        assert_eq!(escape_filter_value(r"C:\MyFile"), r"C:\5cMyFile");
        assert_eq!(escape_filter_value("\0\0\0\u{4}"), r"\00\00\00\04");
        // `(sn=Lu\c4\8di\c4\87)`: UTF-8 may also be sent unescaped.
        assert_eq!(escape_filter_value("Lučić"), "Lučić");
    }

    #[test]
    fn filter_injection_is_literal() {
        assert_eq!(escape_filter_value("*)(uid=*"), r"\2a\29\28uid=\2a");
        assert_eq!(escape_filter_value("admin)(|(uid=*"), r"admin\29\28|\28uid=\2a");
        assert_eq!(escape_filter_value("a\r\nb"), r"a\0d\0ab");
    }

    // RFC 4514 §4 examples, as the attribute value and its escaped form.
    #[test]
    fn rfc4514_section4_examples() {
        // CN=James \"Jim\" Smith\, III,DC=example,DC=net
        assert_eq!(escape_dn_value(r#"James "Jim" Smith, III"#), r#"James \"Jim\" Smith\, III"#);
        // CN=Before\0dAfter,DC=example,DC=net
        assert_eq!(escape_dn_value("Before\rAfter"), r"Before\0dAfter");
        // CN=Lu\C4\8Di\C4\87 may be written with raw UTF-8.
        assert_eq!(escape_dn_value("Lučić"), "Lučić");
        // OU=Sales+CN=J.  Smith: a '+' inside a value must be escaped.
        assert_eq!(escape_dn_value("Sales+CN=J.  Smith"), r"Sales\+CN\=J.  Smith");
    }

    #[test]
    fn dn_leading_and_trailing_specials() {
        assert_eq!(escape_dn_value("#foo"), r"\#foo");
        assert_eq!(escape_dn_value("a#b"), "a#b");
        assert_eq!(escape_dn_value(" a b "), r"\ a b\ ");
        assert_eq!(escape_dn_value(" "), r"\ ");
        assert_eq!(escape_dn_value("x;y<z>"), r"x\;y\<z\>");
        assert_eq!(escape_dn_value("\0"), r"\00");
        assert_eq!(escape_dn_value(r"a\b"), r"a\\b");
        assert_eq!(escape_dn_value(""), "");
    }

    #[test]
    fn rdn_value_round_trips_the_escaper() {
        for v in ["vpn-admins", r#"James "Jim" Smith, III"#, "#o'Brien, Jr. (*)+\\<ü>;=\"x", "Before\rAfter", " x "] {
            let dn = format!("cn={},ou=groups,dc=example,dc=org", escape_dn_value(v));
            assert_eq!(first_rdn_value(&dn).as_deref(), Some(v.trim()), "{dn}");
        }
    }

    #[test]
    fn rdn_value_forms() {
        assert_eq!(first_rdn_value("CN=Domain Admins,CN=Users,DC=corp,DC=example").as_deref(), Some("Domain Admins"));
        assert_eq!(first_rdn_value(r"cn=Lu\C4\8Di\C4\87,dc=x").as_deref(), Some("Lučić"));
        assert_eq!(first_rdn_value("cn=a+sn=b,dc=x").as_deref(), Some("a"));
        assert_eq!(first_rdn_value("not a dn"), None);
        assert_eq!(first_rdn_value("cn=,dc=x"), None);
        assert_eq!(first_rdn_value(r"cn=bad\"), None);
        assert_eq!(first_rdn_value(r"cn=\ff,dc=x"), None);
    }
}
