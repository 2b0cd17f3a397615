//! Database URLs for display: the password never leaves the process in a
//! log line, an error message or `tessera config show`.

const HIDDEN: &str = "<redacted>";

/// `url` with its password replaced by `<redacted>`, in both forms the
/// driver accepts: `postgres://user:password@host/db?password=…` and
/// `host=… password=… ` (key=value, the value possibly single-quoted).
pub fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let (scheme, rest) = url.split_at(scheme_end + 3);
        let (main, query) = match rest.find('?') {
            Some(q) => rest.split_at(q),
            None => (rest, ""),
        };
        // The last '@' ends the credentials: a password may hold a
        // (badly encoded) '@', a host never does.
        let main = match main.rfind('@') {
            Some(at) => {
                let (creds, host) = main.split_at(at);
                match creds.split_once(':') {
                    Some((user, _)) => format!("{user}:{HIDDEN}{host}"),
                    None => main.to_string(),
                }
            }
            None => main.to_string(),
        };
        let query = redact_query(query);
        return format!("{scheme}{main}{query}");
    }
    redact_key_value(url)
}

/// `?a=1&password=x&b=2` → `?a=1&password=<redacted>&b=2`.
fn redact_query(query: &str) -> String {
    let Some(q) = query.strip_prefix('?') else { return query.to_string() };
    let parts: Vec<String> = q
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}={HIDDEN}"),
            _ => p.to_string(),
        })
        .collect();
    format!("?{}", parts.join("&"))
}

/// `host=h password='a b' user=u` → `host=h password=<redacted> user=u`.
fn redact_key_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = find_password_key(rest) {
        out.push_str(&rest[..pos]);
        let after_key = &rest[pos + "password".len()..];
        let eq = after_key.find('=').map_or(0, |i| i + 1);
        out.push_str(&rest[pos..pos + "password".len() + eq]);
        out.push_str(HIDDEN);
        let value = after_key[eq..].trim_start();
        rest = skip_value(value);
    }
    out.push_str(rest);
    out
}

/// Where a `password` keyword (followed by optional spaces and `=`) starts,
/// at the start of the string or after whitespace.
fn find_password_key(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find("password") {
        let at = from + i;
        let starts_word = at == 0 || s[..at].ends_with(char::is_whitespace);
        let followed = s[at + "password".len()..].trim_start().starts_with('=');
        if starts_word && followed {
            return Some(at);
        }
        from = at + "password".len();
    }
    None
}

/// The text after a key=value value (quoted with `'`, backslash escapes, or
/// up to the next whitespace).
fn skip_value(v: &str) -> &str {
    if let Some(q) = v.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in q.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => return &q[i + 1..],
                _ => {}
            }
        }
        ""
    } else {
        v.find(char::is_whitespace).map_or("", |i| &v[i..])
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn url_passwords_are_hidden() {
        let cases = [
            (
                "postgres://tessera:s3cret@db.example:5432/tessera",
                "postgres://tessera:<redacted>@db.example:5432/tessera",
            ),
            ("postgresql://u:p%40ss@h/db?sslmode=disable", "postgresql://u:<redacted>@h/db?sslmode=disable"),
            ("postgres://u:a@b@h1,h2/db", "postgres://u:<redacted>@h1,h2/db"),
            (
                "postgres://u@h/db?password=s3cret&application_name=x",
                "postgres://u@h/db?password=<redacted>&application_name=x",
            ),
            ("postgres://h/db", "postgres://h/db"),
            ("", ""),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn key_value_passwords_are_hidden() {
        let shown = redact_url("host=h password='se cr\\'et' user=u");
        assert_eq!(shown, "host=h password=<redacted> user=u");
        assert_eq!(redact_url("password = s3cret dbname=x"), "password =<redacted> dbname=x");
        assert_eq!(redact_url("user=password dbname=x"), "user=password dbname=x");
        assert!(!redact_url("host=h password=s3cret").contains("s3cret"));
    }
}
