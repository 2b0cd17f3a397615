//! Codes by email: one SMTP session per code (lettre over tokio and
//! rustls), STARTTLS required or implicit TLS, certificates checked against
//! the system's CAs plus `ca_file`, optional AUTH. Plain SMTP only to a
//! loopback relay (checked in `config`).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tessera_core::oob::DeliveryError;
use zeroize::Zeroizing;

use super::config::{EmailSection, EmailTls};

/// Sends codes through one SMTP submission server.
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    subject: String,
    body: String,
    timeout: Duration,
    /// `host:port`, for errors and logs.
    server: String,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp").field("server", &self.server).field("from", &self.from.email).finish_non_exhaustive()
    }
}

impl Smtp {
    /// Reads the password and CA files and builds the transport (no
    /// connection yet). `hello` is the name sent in EHLO.
    pub fn new(cfg: &EmailSection, hello: &str) -> Result<Self, String> {
        let from: Mailbox = cfg.from.parse().map_err(|e| format!("email.from `{}`: {e}", cfg.from))?;
        let timeout = Duration::from_secs(cfg.timeout_seconds);
        let tls = match cfg.tls_mode()? {
            EmailTls::None => Tls::None,
            mode => {
                let mut params = TlsParameters::builder(cfg.host.clone());
                if !cfg.ca_file.as_os_str().is_empty() {
                    let pem = std::fs::read(&cfg.ca_file)
                        .map_err(|e| format!("email.ca_file {}: {e}", cfg.ca_file.display()))?;
                    let cert = Certificate::from_pem(&pem)
                        .map_err(|e| format!("email.ca_file {}: {e}", cfg.ca_file.display()))?;
                    params = params.add_root_certificate(cert);
                }
                let params = params.build_rustls().map_err(|e| format!("email TLS settings: {e}"))?;
                if mode == EmailTls::Implicit { Tls::Wrapper(params) } else { Tls::Required(params) }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(timeout))
            .hello_name(ClientId::Domain(hello.to_string()));
        if !cfg.username.is_empty() {
            let text = Zeroizing::new(
                std::fs::read_to_string(&cfg.password_file)
                    .map_err(|e| format!("email.password_file {}: {e}", cfg.password_file.display()))?,
            );
            let password = text.lines().next().unwrap_or_default().to_string();
            if password.is_empty() {
                return Err(format!("email.password_file {}: the first line is empty", cfg.password_file.display()));
            }
            builder = builder.credentials(Credentials::new(cfg.username.clone(), password));
        }
        Ok(Smtp {
            transport: builder.build(),
            from,
            subject: cfg.subject.clone(),
            body: cfg.body.clone(),
            timeout,
            server: format!("{}:{}", cfg.host, cfg.port),
        })
    }

    /// Sends one message; `vars` fill the subject and body templates.
    pub async fn send(&self, to: &str, vars: &[(&str, &str)]) -> Result<(), DeliveryError> {
        let fail = |m: String| DeliveryError(format!("smtp {}: {m}", self.server));
        let to: Mailbox = to.parse().map_err(|e| fail(format!("recipient address: {e}")))?;
        let subject = super::template::render(&self.subject, vars, super::template::Escape::None);
        let body = Zeroizing::new(super::template::render(&self.body, vars, super::template::Escape::None));
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .map_err(|e| fail(format!("message: {e}")))?;
        // lettre bounds each SMTP command; this bounds the whole session.
        match tokio::time::timeout(self.timeout * 3, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(fail(error_chain(&e))),
            Err(_) => Err(fail(format!("no answer within {} s", self.timeout.as_secs() * 3))),
        }
    }
}

/// "a: b: c" from an error and its sources (SMTP replies and TLS errors;
/// never the message, which lettre does not put into errors).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut current = e.source();
    while let Some(err) = current {
        let text = err.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        current = err.source();
    }
    out
}
