//! `[oob]`, `[email]` and `[sms]`: how codes are made and limited, and the
//! two ways they leave. The sections are data in `crate::config`; their
//! formal checks are here ([`check`], run by `crate::node::startup_checks`
//! wherever a configuration is loaded); files are read and transports built
//! at start-up (`super::service`).

use std::net::IpAddr;

use tessera_core::oob::OobSettings;

use super::template;
use crate::config::Config;
pub use crate::config::{EmailSection, OobSection, SmsSection};

/// Longest wait for one delivery (connect, TLS, SMTP dialogue or HTTP exchange).
pub const MAX_TIMEOUT_SECONDS: u64 = 60;

impl OobSection {
    pub fn settings(&self) -> OobSettings {
        OobSettings {
            ttl_seconds: self.ttl_seconds,
            user_limit: self.user_limit,
            user_window_seconds: self.user_window_seconds,
            global_per_minute: self.global_per_minute,
            prompt: self.prompt.clone(),
            failure_message: self.failure_message.clone(),
        }
    }
}

/// Placeholders of `[oob] message`.
pub const MESSAGE_VARS: &[&str] = &["code", "minutes", "username"];
/// Placeholders of `[email] subject` and `body`.
pub const EMAIL_VARS: &[&str] = &["code", "minutes", "username", "message"];
/// Placeholders of `[sms] url` and `body`.
pub const SMS_VARS: &[&str] = &["phone", "message", "code", "minutes", "username"];

/// How the email session is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailTls {
    StartTls,
    Implicit,
    None,
}

impl EmailSection {
    pub fn enabled(&self) -> bool {
        !self.host.is_empty()
    }

    pub fn tls_mode(&self) -> Result<EmailTls, String> {
        match self.tls.as_str() {
            "starttls" => Ok(EmailTls::StartTls),
            "tls" => Ok(EmailTls::Implicit),
            "none" => Ok(EmailTls::None),
            other => Err(format!("email.tls must be starttls, tls or none (got `{other}`)")),
        }
    }
}

impl SmsSection {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// The `Name: value` pairs of `headers`.
    pub fn header_pairs(&self) -> Result<Vec<(&str, &str)>, String> {
        self.headers
            .iter()
            .map(|h| match h.split_once(':') {
                Some((n, v)) if !n.trim().is_empty() && !n.contains(char::is_whitespace) => Ok((n.trim(), v.trim())),
                _ => Err(format!("sms.headers: `{}` is not `Name: value`", header_label(h))),
            })
            .collect()
    }

    /// The escaping the body needs, from its Content-Type header.
    pub fn body_escape(&self) -> template::Escape {
        let ct = self
            .header_pairs()
            .unwrap_or_default()
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.to_ascii_lowercase());
        match ct {
            Some(v) if v.contains("json") => template::Escape::Json,
            Some(v) if v.contains("x-www-form-urlencoded") => template::Escape::Form,
            _ => template::Escape::None,
        }
    }
}

/// A header shown in an error without its value (it may be a credential).
fn header_label(h: &str) -> String {
    h.split([':', ' ', '\t']).next().unwrap_or_default().chars().take(40).collect()
}

/// Parses `200-299`, `200,202,204`, or a mix: the accepted statuses.
pub fn parse_statuses(text: &str) -> Result<Vec<(u16, u16)>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let parse = |s: &str| s.trim().parse::<u16>().ok().filter(|n| (100..=599).contains(n));
        match (parse(a), parse(b)) {
            (Some(a), Some(b)) if a <= b => out.push((a, b)),
            _ => return Err(format!("sms.success_status: `{part}` is not a status or range (100–599)")),
        }
    }
    if out.is_empty() {
        return Err("sms.success_status must name at least one status".into());
    }
    Ok(out)
}

/// Whether `host` is this machine (plain SMTP is refused anywhere else).
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Every formal rule of the three sections.
pub fn check(cfg: &Config) -> Result<(), String> {
    cfg.oob.settings().validate().map_err(|m| format!("oob.{m}"))?;
    template::check(&cfg.oob.message, MESSAGE_VARS, "oob.message")?;
    if !cfg.oob.message.contains("{code}") {
        return Err("oob.message must contain {code}".into());
    }
    let e = &cfg.email;
    let mode = e.tls_mode()?;
    if e.enabled() {
        if mode == EmailTls::None && !is_loopback(&e.host) {
            return Err(format!(
                "email.tls = \"none\" is only allowed to a loopback host (got `{}`); use starttls or tls",
                e.host
            ));
        }
        if e.from.is_empty() {
            return Err("email.from is required when email.host is set".into());
        }
        if e.username.is_empty() != e.password_file.as_os_str().is_empty() {
            return Err("email.username and email.password_file must be set together".into());
        }
        if e.port == 0 {
            return Err("email.port must not be 0".into());
        }
    }
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&e.timeout_seconds) {
        return Err(format!("email.timeout_seconds must be 1–{MAX_TIMEOUT_SECONDS}"));
    }
    template::check(&e.subject, EMAIL_VARS, "email.subject")?;
    template::check(&e.body, EMAIL_VARS, "email.body")?;
    if e.subject.chars().any(char::is_control) {
        return Err("email.subject must be one line".into());
    }
    let s = &cfg.sms;
    if s.enabled() && !(s.url.starts_with("https://") || s.url.starts_with("http://")) {
        return Err(format!("sms.url must be an http:// or https:// URL (got `{}`)", s.url));
    }
    if !matches!(s.method.as_str(), "POST" | "PUT" | "PATCH" | "GET") {
        return Err(format!("sms.method must be POST, PUT, PATCH or GET (got `{}`)", s.method));
    }
    if s.method == "GET" && !s.body.is_empty() {
        return Err("sms.body must be empty with method GET (put the placeholders into the URL)".into());
    }
    s.header_pairs()?;
    parse_statuses(&s.success_status)?;
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&s.timeout_seconds) {
        return Err(format!("sms.timeout_seconds must be 1–{MAX_TIMEOUT_SECONDS}"));
    }
    template::check(&s.url, SMS_VARS, "sms.url")?;
    template::check(&s.body, SMS_VARS, "sms.body")?;
    if s.enabled() && !(s.url.contains("{phone}") || s.body.contains("{phone}")) {
        return Err("sms: {phone} must appear in sms.url or sms.body".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut Config)) -> Result<(), String> {
        let mut c = Config::default();
        f(&mut c);
        check(&c)
    }

    #[test]
    fn defaults_are_valid_and_off() {
        let c = Config::default();
        check(&c).unwrap();
        assert!(!c.email.enabled() && !c.sms.enabled());
    }

    #[test]
    fn statuses() {
        assert_eq!(parse_statuses("200-299").unwrap(), [(200, 299)]);
        assert_eq!(parse_statuses("200, 202-204").unwrap(), [(200, 200), (202, 204)]);
        for bad in ["", "2xx", "299-200", "99", "200-700", "abc-def"] {
            assert!(parse_statuses(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_smtp_only_on_loopback() {
        let set = |host: &str| {
            with(|c| {
                c.email.host = host.into();
                c.email.tls = "none".into();
                c.email.from = "t@example.com".into();
            })
        };
        assert!(set("127.0.0.1").is_ok() && set("localhost").is_ok() && set("::1").is_ok());
        assert!(set("smtp.example.com").unwrap_err().contains("loopback"));
        assert!(set("10.0.0.1").is_err());
    }

    #[test]
    fn email_needs_from_and_complete_credentials() {
        let e = with(|c| c.email.host = "smtp.example.com".into()).unwrap_err();
        assert!(e.contains("email.from"), "{e}");
        let e = with(|c| {
            c.email.host = "smtp.example.com".into();
            c.email.from = "t@example.com".into();
            c.email.username = "u".into();
        })
        .unwrap_err();
        assert!(e.contains("password_file"), "{e}");
        assert!(with(|c| c.email.tls = "ssl".into()).unwrap_err().contains("email.tls"));
    }

    #[test]
    fn sms_rules() {
        let sms = |f: fn(&mut SmsSection)| {
            with(|c| {
                c.sms.url = "https://sms.example.com/send".into();
                c.sms.body = "to={phone}&text={message}".into();
                f(&mut c.sms);
            })
        };
        sms(|_| {}).unwrap();
        assert!(sms(|s| s.body = "text={message}".into()).unwrap_err().contains("{phone}"));
        assert!(sms(|s| s.url = "ftp://x".into()).unwrap_err().contains("sms.url"));
        assert!(sms(|s| s.method = "DELETE".into()).unwrap_err().contains("sms.method"));
        assert!(sms(|s| s.method = "GET".into()).unwrap_err().contains("GET"));
        assert!(sms(|s| s.headers = vec!["Authorization Bearer x".into()]).unwrap_err().contains("Authorization"));
        assert!(sms(|s| s.body = "to={phone}&t={mesage}".into()).unwrap_err().contains("mesage"));
        assert!(sms(|s| s.success_status = "2xx".into()).is_err());
        let e = sms(|s| s.headers = vec!["X-Key secret-value".into()]).unwrap_err();
        assert!(!e.contains("secret-value"), "header values are not echoed: {e}");
    }

    #[test]
    fn body_escape_follows_content_type() {
        let mut s = SmsSection::default();
        assert_eq!(s.body_escape(), template::Escape::None);
        s.headers = vec!["content-type: application/json; charset=utf-8".into()];
        assert_eq!(s.body_escape(), template::Escape::Json);
        s.headers = vec!["Content-Type: application/x-www-form-urlencoded".into()];
        assert_eq!(s.body_escape(), template::Escape::Form);
    }

    #[test]
    fn oob_bounds() {
        assert!(with(|c| c.oob.ttl_seconds = 0).unwrap_err().contains("oob.ttl_seconds"));
        assert!(with(|c| c.oob.message = "no code here".into()).unwrap_err().contains("{code}"));
        assert!(with(|c| c.oob.message = "{code} {cod}".into()).unwrap_err().contains("cod"));
    }
}
