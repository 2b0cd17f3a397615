//! Syslog message formats, sans I/O: RFC 5424 and RFC 3164 (BSD) lines
//! for audit records and log events. Framing for a stream (RFC 6587 octet
//! counting) is [`octet_counted`]; sockets live in `transport.rs`.
//!
//! Everything from outside (usernames, reasons, log fields) is escaped so a
//! value cannot end a structured-data element early or start a new line in
//! a receiver's file: `"` `\` `]` are backslash-escaped in SD values
//! (RFC 5424 §6.3.3) and control characters become `#ooo` (octal, as
//! rsyslog writes them) everywhere. Header fields are reduced to printable
//! US-ASCII and cut to their RFC lengths.

use std::fmt::Write as _;

use tessera_core::audit::chain::ChainedAudit;
use tessera_core::audit::{AuditRecord, AuditResult};
use tessera_core::clock::Timestamp;

/// The structured-data id of audit records. 32473 is the private
/// enterprise number RFC 5612 reserves for documentation and examples:
/// tessera has no number of its own, and a receiver needs only a stable id.
pub const AUDIT_SD_ID: &str = "audit@32473";
/// MSGID of audit records and of log events (RFC 5424).
pub const AUDIT_MSGID: &str = "audit";
pub const LOG_MSGID: &str = "log";

/// RFC 5424 §6.2 field lengths.
const HOSTNAME_MAX: usize = 255;
const APP_NAME_MAX: usize = 48;
/// RFC 3164 §4.1.3: the TAG is at most 32 characters.
const TAG_MAX: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Rfc5424,
    Rfc3164,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rfc5424" => Ok(Format::Rfc5424),
            "rfc3164" => Ok(Format::Rfc3164),
            other => Err(format!("syslog.format must be rfc5424 or rfc3164 (got `{other}`)")),
        }
    }
}

/// Facilities by their usual names (RFC 5424 §6.2.1, as in syslog.conf).
const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("ntp", 12),
    ("security", 13),
    ("console", 14),
    ("clock", 15),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facility(u8);

impl Facility {
    pub fn code(self) -> u8 {
        self.0
    }
}

impl std::str::FromStr for Facility {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FACILITIES.iter().find(|(n, _)| *n == s).map(|(_, c)| Facility(*c)).ok_or_else(|| {
            let names: Vec<&str> = FACILITIES.iter().map(|(n, _)| *n).collect();
            format!("syslog.facility `{s}` is not one of {}", names.join(", "))
        })
    }
}

/// RFC 5424 §6.2.1 severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Severity {
    Error = 3,
    Warning = 4,
    Notice = 5,
    Informational = 6,
    Debug = 7,
}

impl Severity {
    /// Audit records: refusals and failed admin actions are warnings (the
    /// ones to alert on), everything else is a notice.
    pub fn of_audit(r: &AuditRecord) -> Severity {
        match r.result {
            AuditResult::Reject | AuditResult::Error => Severity::Warning,
            AuditResult::Accept | AuditResult::Challenge | AuditResult::Ok => Severity::Notice,
        }
    }

    pub fn of_level(level: &tracing::Level) -> Severity {
        match *level {
            tracing::Level::ERROR => Severity::Error,
            tracing::Level::WARN => Severity::Warning,
            tracing::Level::INFO => Severity::Informational,
            _ => Severity::Debug,
        }
    }
}

/// Everything constant about this sender's lines.
#[derive(Debug, Clone)]
pub struct Formatter {
    format: Format,
    facility: Facility,
    hostname: String,
    app_name: String,
    tag: String,
    procid: String,
    /// Whether RFC 3164 lines name the host. Local daemons (`/dev/log`)
    /// add the host themselves and read a leading word as the tag, so
    /// like glibc's syslog(3) we leave it out there.
    bsd_hostname: bool,
    /// Longest line; the free-text MSG is cut (at a character) to fit.
    max_len: usize,
}

impl Formatter {
    pub fn new(
        format: Format,
        facility: Facility,
        hostname: &str,
        app_name: &str,
        procid: u32,
        bsd_hostname: bool,
        max_len: usize,
    ) -> Self {
        Formatter {
            format,
            facility,
            hostname: header_field(hostname, HOSTNAME_MAX),
            app_name: header_field(app_name, APP_NAME_MAX),
            tag: tag(app_name),
            procid: procid.to_string(),
            bsd_hostname,
            max_len,
        }
    }

    fn pri(&self, severity: Severity) -> u8 {
        self.facility.0 * 8 + severity as u8
    }

    /// One audit record. RFC 5424: the fields as structured data, a short
    /// summary as MSG. RFC 3164 has no structured data: the fields go into
    /// MSG as `key=value` (values with spaces or quotes quoted).
    pub fn audit(&self, c: &ChainedAudit) -> String {
        let r = &c.record;
        let id = r.id.to_string();
        let seq = c.link.map(|l| l.seq.to_string());
        let hash = c.link.map(|l| data_encoding::HEXLOWER.encode(&l.hash));
        let mut params: Vec<(&str, &str)> =
            vec![("id", &id), ("node", &r.node), ("actor", &r.actor), ("action", &r.action)];
        for (k, v) in [("target", &r.target), ("source", &r.source), ("client", &r.client)] {
            if let Some(v) = v {
                params.push((k, v));
            }
        }
        params.push(("result", r.result.as_str()));
        if let Some(reason) = &r.reason {
            params.push(("reason", reason));
        }
        if let (Some(seq), Some(hash)) = (&seq, &hash) {
            params.push(("seq", seq));
            params.push(("hash", hash));
        }
        let severity = Severity::of_audit(r);
        match self.format {
            Format::Rfc5424 => {
                let mut sd = format!("[{AUDIT_SD_ID}");
                for (k, v) in &params {
                    let _ = write!(sd, " {k}=\"{}\"", sd_escape(v));
                }
                sd.push(']');
                let mut msg = format!("{} {}", r.action, r.target.as_deref().unwrap_or("-"));
                let _ = write!(msg, ": {}", r.result.as_str());
                if let Some(reason) = &r.reason {
                    let _ = write!(msg, " ({reason})");
                }
                self.rfc5424(severity, r.at, AUDIT_MSGID, &sd, &msg)
            }
            Format::Rfc3164 => {
                let mut msg = String::from("audit");
                for (k, v) in &params {
                    let _ = write!(msg, " {k}={}", kv_value(v));
                }
                self.rfc3164(severity, r.at, &msg)
            }
        }
    }

    /// One log event: its message and fields as text.
    pub fn log(&self, severity: Severity, at: Timestamp, text: &str) -> String {
        match self.format {
            Format::Rfc5424 => self.rfc5424(severity, at, LOG_MSGID, "-", text),
            Format::Rfc3164 => self.rfc3164(severity, at, text),
        }
    }

    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG` (RFC 5424 §6).
    /// MSG is sent without a BOM (RFC 5424's MSG-ANY); it is UTF-8.
    fn rfc5424(&self, severity: Severity, at: Timestamp, msgid: &str, sd: &str, msg: &str) -> String {
        let mut line = format!(
            "<{}>1 {} {} {} {} {msgid} {sd}",
            self.pri(severity),
            at.to_rfc3339(),
            self.hostname,
            self.app_name,
            self.procid
        );
        self.push_msg(&mut line, msg);
        line
    }

    /// `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG` (RFC 3164 §4.1), in UTC.
    fn rfc3164(&self, severity: Severity, at: Timestamp, msg: &str) -> String {
        let mut line = format!("<{}>{}", self.pri(severity), bsd_timestamp(at));
        if self.bsd_hostname {
            let _ = write!(line, " {}", self.hostname);
        }
        let _ = write!(line, " {}[{}]:", self.tag, self.procid);
        self.push_msg(&mut line, msg);
        line
    }

    fn push_msg(&self, line: &mut String, msg: &str) {
        if msg.is_empty() {
            return;
        }
        line.push(' ');
        for c in msg.chars() {
            let before = line.len();
            push_escaped_char(line, c);
            if line.len() > self.max_len {
                line.truncate(before);
                return;
            }
        }
    }
}

/// RFC 6587 §3.4.1 octet-counting frame: `MSG-LEN SP SYSLOG-MSG`.
pub fn octet_counted(msg: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 6);
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg.as_bytes());
    out
}

/// `Mmm dd hh:mm:ss` with a space-padded day (RFC 3164 §4.1.2), UTC.
fn bsd_timestamp(at: Timestamp) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    // YYYY-MM-DDTHH:MM:SS.mmmZ
    let iso = at.to_rfc3339();
    let month: usize = iso.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    let day: u32 = iso.get(8..10).and_then(|d| d.parse().ok()).unwrap_or(1);
    let time = iso.get(11..19).unwrap_or("00:00:00");
    format!("{} {day:>2} {time}", MONTHS[month.clamp(1, 12) - 1])
}

/// A header field: printable US-ASCII without spaces, at most `max`
/// characters; `-` (RFC 5424's NILVALUE) when nothing is left.
fn header_field(s: &str, max: usize) -> String {
    let out: String = s.chars().map(|c| if c.is_ascii_graphic() { c } else { '_' }).take(max).collect();
    if out.is_empty() { "-".into() } else { out }
}

fn tag(app_name: &str) -> String {
    let out: String = app_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_./".contains(c) { c } else { '_' })
        .take(TAG_MAX)
        .collect();
    if out.is_empty() { "tessera".into() } else { out }
}

fn push_escaped_char(out: &mut String, c: char) {
    if c.is_control() && (c as u32) < 0x100 {
        let _ = write!(out, "#{:03o}", c as u32);
    } else {
        out.push(c);
    }
}

/// An SD-PARAM value (RFC 5424 §6.3.3).
fn sd_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        push_escaped_char(&mut out, c);
    }
    out
}

/// A `key=value` value: bare when it is one plain word, else quoted with
/// `"` and `\` escaped.
fn kv_value(v: &str) -> String {
    if !v.is_empty() && v.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' && c != '=') {
        return v.to_string();
    }
    let mut out = String::from("\"");
    for c in v.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use tessera_core::audit::Actor;
    use tessera_core::audit::chain::{ChainPoint, Link};

    use super::*;

    /// 2026-11-22T10:04:05.123Z
    const AT: Timestamp = Timestamp(1_795_341_845_123);

    fn fmt(format: Format) -> Formatter {
        Formatter::new(format, "auth".parse().unwrap(), "node-1", "tessera", 4242, true, 8192)
    }

    fn login() -> ChainedAudit {
        let mut r =
            AuditRecord::new(AT, "node-1", &Actor::new("validate").with_address(Some("192.0.2.7".into())), "validate")
                .target("alice")
                .result(AuditResult::Accept, Some("otp"));
        r.id = 17;
        let link = Link::after(&ChainPoint { seq: 4, id: 16, hash: [0xab; 32] }, 17, &r);
        ChainedAudit { record: r, link: Some(link) }
    }

    #[test]
    fn rfc5424_audit_record() {
        let c = login();
        let hash = data_encoding::HEXLOWER.encode(&c.link.unwrap().hash);
        assert_eq!(
            fmt(Format::Rfc5424).audit(&c),
            format!(
                "<37>1 2026-11-22T10:04:05.123Z node-1 tessera 4242 audit [audit@32473 id=\"17\" node=\"node-1\" \
                 actor=\"validate\" action=\"validate\" target=\"alice\" source=\"192.0.2.7\" result=\"accept\" \
                 reason=\"otp\" seq=\"5\" hash=\"{hash}\"] validate alice: accept (otp)"
            )
        );
    }

    #[test]
    fn rfc5424_reject_is_a_warning_and_sd_values_are_escaped() {
        let mut c = login();
        c.link = None;
        c.record.result = AuditResult::Reject;
        c.record.target = Some("a\"b]c\\d".into());
        c.record.reason = Some("line\nbreak".into());
        c.record.source = None;
        assert_eq!(
            fmt(Format::Rfc5424).audit(&c),
            "<36>1 2026-11-22T10:04:05.123Z node-1 tessera 4242 audit [audit@32473 id=\"17\" node=\"node-1\" \
             actor=\"validate\" action=\"validate\" target=\"a\\\"b\\]c\\\\d\" result=\"reject\" \
             reason=\"line#012break\"] validate a\"b]c\\d: reject (line#012break)"
        );
    }

    #[test]
    fn rfc3164_audit_record() {
        let mut c = login();
        c.link = None;
        c.record.reason = Some("otp (via ldap:corp)".into());
        assert_eq!(
            fmt(Format::Rfc3164).audit(&c),
            "<37>Nov 22 10:04:05 node-1 tessera[4242]: audit id=17 node=node-1 actor=validate action=validate \
             target=alice source=192.0.2.7 result=accept reason=\"otp (via ldap:corp)\""
        );
    }

    #[test]
    fn rfc3164_pads_the_day_and_leaves_out_the_host_locally() {
        let f = Formatter::new(Format::Rfc3164, "local3".parse().unwrap(), "node-1", "my app", 7, false, 8192);
        // 2026-01-02T03:04:05Z
        let at = Timestamp(1_767_323_045_000);
        assert_eq!(f.log(Severity::Error, at, "disk full"), "<155>Jan  2 03:04:05 my_app[7]: disk full");
    }

    #[test]
    fn rfc5424_log_event_and_header_fields() {
        let f = Formatter::new(Format::Rfc5424, "daemon".parse().unwrap(), "host name", "", 1, true, 8192);
        assert_eq!(
            f.log(Severity::Informational, AT, "HTTPS listening addr=127.0.0.1:8443"),
            "<30>1 2026-11-22T10:04:05.123Z host_name - 1 log - HTTPS listening addr=127.0.0.1:8443"
        );
        let long = "h".repeat(300);
        let f = Formatter::new(Format::Rfc5424, "daemon".parse().unwrap(), &long, "a", 1, true, 8192);
        assert!(f.log(Severity::Debug, AT, "x").contains(&format!(" {} a ", "h".repeat(255))));
    }

    #[test]
    fn long_messages_are_cut_to_the_limit_at_a_character() {
        let f = Formatter::new(Format::Rfc3164, "user".parse().unwrap(), "h", "t", 1, true, 40);
        let line = f.log(Severity::Notice, AT, &"é".repeat(100));
        assert!(line.len() <= 40, "{line}");
        assert!(line.starts_with("<13>Nov 22 10:04:05 h t[1]: éé"), "{line}");
    }

    #[test]
    fn octet_counting_frames() {
        assert_eq!(octet_counted("<13>1 - - - - - - hi"), b"20 <13>1 - - - - - - hi");
        assert_eq!(octet_counted("é"), b"2 \xc3\xa9");
    }

    #[test]
    fn facility_names() {
        assert_eq!("authpriv".parse::<Facility>().unwrap().code(), 10);
        assert_eq!("local7".parse::<Facility>().unwrap().code(), 23);
        assert!("local8".parse::<Facility>().unwrap_err().contains("local7"));
        assert!("rfc5425".parse::<Format>().is_err());
    }
}
