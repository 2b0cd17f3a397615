//! Case-sensitive `*` wildcard search on usernames, as administrators type it
//! (`jo*`, `*son`, `*@example.org`). Only `*` is special; everything else,
//! including `?`, `%`, `_` and `[`, matches itself, so each backend gets the
//! pattern translated with its own escaping.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wildcard(String);

pub const MAX_PATTERN_LEN: usize = 256;

impl Wildcard {
    pub fn parse(p: &str) -> Result<Self, String> {
        if p.len() > MAX_PATTERN_LEN {
            return Err(format!("search pattern longer than {MAX_PATTERN_LEN} bytes"));
        }
        if p.chars().any(char::is_control) {
            return Err("search pattern contains control characters".into());
        }
        Ok(Wildcard(p.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// SQLite `GLOB` form (case-sensitive): `*` stays, the other GLOB
    /// metacharacters are bracketed so they match literally.
    pub fn to_sqlite_glob(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + 8);
        for c in self.0.chars() {
            match c {
                '?' => out.push_str("[?]"),
                '[' => out.push_str("[[]"),
                ']' => out.push_str("[]]"),
                c => out.push(c),
            }
        }
        out
    }

    /// SQL `LIKE … ESCAPE '\'` form (PostgreSQL's LIKE is case-sensitive).
    pub fn to_sql_like(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + 8);
        for c in self.0.chars() {
            match c {
                '*' => out.push('%'),
                '%' | '_' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
        out
    }

    /// In-memory matching with the same semantics.
    pub fn matches(&self, s: &str) -> bool {
        let parts: Vec<&str> = self.0.split('*').collect();
        if parts.len() == 1 {
            return s == self.0;
        }
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
            return false;
        }
        let mut rest = &s[first.len()..s.len() - last.len()];
        for mid in &parts[1..parts.len() - 1] {
            match rest.find(mid) {
                Some(i) => rest = &rest[i + mid.len()..],
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let w = |p: &str| Wildcard::parse(p).unwrap();
        assert!(w("jo*").matches("john"));
        assert!(!w("jo*").matches("John"));
        assert!(w("*jo*").matches("majo"));
        assert!(w("*").matches(""));
        assert!(w("a*b*c").matches("abc"));
        assert!(!w("a*b*c").matches("acb"));
        assert!(w("a?").matches("a?"));
        assert!(!w("a?").matches("ab"));
        assert_eq!(w("a?[x]*").to_sqlite_glob(), "a[?][[]x[]]*");
        assert_eq!(w("a_%\\*").to_sql_like(), "a\\_\\%\\\\%");
    }
}
