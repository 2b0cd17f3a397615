//! Email and SMS codes, the I/O side: `tessera_core::oob::OobSender` over
//! SMTP (`smtp.rs`) and an HTTP gateway (`sms.rs`), with the texts from
//! `[oob]`, `[email]` and `[sms]` (`config.rs`, `template.rs`).
//!
//! The engine decides when a code goes out, keeps its digest and limits
//! sending; this module only renders and delivers. The code lives in the
//! rendered text and the request, never in a log line or error.

pub mod config;
pub mod sms;
pub mod smtp;
pub mod template;

use std::sync::Arc;

use tessera_core::model::OobChannel;
use tessera_core::oob::{DeliveryError, OobMessage, OobSender, OobService};
use zeroize::Zeroizing;

use crate::config::Config;

/// The configured channels.
#[derive(Debug)]
pub struct Channels {
    email: Option<smtp::Smtp>,
    sms: Option<sms::SmsGateway>,
    /// `[oob] message`.
    message: String,
}

impl Channels {
    /// Builds the channels `cfg` enables (reads password and CA files).
    pub fn new(cfg: &Config) -> Result<Self, String> {
        let email = cfg.email.enabled().then(|| smtp::Smtp::new(&cfg.email, &cfg.node_name())).transpose()?;
        let sms = cfg.sms.enabled().then(|| sms::SmsGateway::new(&cfg.sms)).transpose()?;
        Ok(Channels { email, sms, message: cfg.oob.message.clone() })
    }
}

/// The engine's view of `cfg`: channels, settings and limits.
pub fn service(cfg: &Config) -> Result<OobService, String> {
    Ok(OobService::new(Arc::new(Channels::new(cfg)?), cfg.oob.settings()))
}

#[async_trait::async_trait]
impl OobSender for Channels {
    fn available(&self, channel: OobChannel) -> bool {
        match channel {
            OobChannel::Email => self.email.is_some(),
            OobChannel::Sms => self.sms.is_some(),
        }
    }

    async fn send(&self, m: &OobMessage<'_>) -> Result<(), DeliveryError> {
        let minutes = m.ttl_seconds.div_ceil(60).to_string();
        let base = [("code", m.code), ("minutes", minutes.as_str()), ("username", m.username)];
        let text = Zeroizing::new(template::render(&self.message, &base, template::Escape::None));
        let vars = [
            ("code", m.code),
            ("minutes", minutes.as_str()),
            ("username", m.username),
            ("message", text.as_str()),
            ("phone", m.to),
        ];
        let (sent, channel) = match m.channel {
            OobChannel::Email => (
                match &self.email {
                    Some(smtp) => smtp.send(m.to, &vars).await,
                    None => Err(DeliveryError("email is not configured on this node ([email] host)".into())),
                },
                crate::metrics::OobChannel::Email,
            ),
            OobChannel::Sms => (
                match &self.sms {
                    Some(gw) => gw.send(&vars).await,
                    None => Err(DeliveryError("SMS is not configured on this node ([sms] url)".into())),
                },
                crate::metrics::OobChannel::Sms,
            ),
        };
        if sent.is_err() {
            crate::metrics::oob_send_failure(channel);
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_send_is_counted_for_metrics() {
        let count = || {
            let text = crate::metrics::render(&crate::metrics::External::default());
            text.lines()
                .find_map(|l| l.strip_prefix("tessera_oob_send_failures_total{channel=\"sms\"} "))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let before = count();
        let channels = Channels::new(&Config::default()).unwrap();
        let m = OobMessage {
            channel: OobChannel::Sms,
            to: "+4915100000000",
            code: "123456",
            ttl_seconds: 300,
            username: "u",
        };
        assert!(channels.send(&m).await.is_err(), "no SMS gateway configured");
        assert!(count() > before);
    }
}
