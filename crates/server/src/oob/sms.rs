//! Codes by SMS: one HTTP request per code to a configurable gateway (URL,
//! method, headers, body template); "sent" means one of the configured
//! statuses. The answer's body is not read. No redirects are followed.
//! Errors never carry the URL (it may hold the number and the code).

use std::time::Duration;

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tessera_core::oob::DeliveryError;
use zeroize::Zeroizing;

use super::config::{SmsSection, parse_statuses};
use super::template::{self, Escape};

pub struct SmsGateway {
    http: reqwest::Client,
    method: Method,
    url: String,
    headers: HeaderMap,
    body: String,
    body_escape: Escape,
    success: Vec<(u16, u16)>,
    /// Scheme, host and port of the URL, for errors and logs.
    origin: String,
}

impl std::fmt::Debug for SmsGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsGateway").field("origin", &self.origin).finish_non_exhaustive()
    }
}

impl SmsGateway {
    pub fn new(cfg: &SmsSection) -> Result<Self, String> {
        let timeout = Duration::from_secs(cfg.timeout_seconds);
        let method: Method = cfg.method.parse().map_err(|_| format!("sms.method `{}`", cfg.method))?;
        let mut headers = HeaderMap::new();
        for (name, value) in cfg.header_pairs()? {
            let n: HeaderName = name.parse().map_err(|_| format!("sms.headers: `{name}` is not a header name"))?;
            let mut v: HeaderValue =
                value.parse().map_err(|_| format!("sms.headers: the value of `{name}` is not a valid header value"))?;
            v.set_sensitive(true);
            headers.append(n, v);
        }
        // The URL with placeholders filled by harmless values must parse.
        let probe = template::render(&cfg.url, &[("phone", "1"), ("message", "m"), ("code", "1")], Escape::Url);
        let parsed = reqwest::Url::parse(&probe).map_err(|e| format!("sms.url: {e}"))?;
        let origin = format!("{}://{}", parsed.scheme(), parsed.host_str().unwrap_or_default())
            + &parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("SMS HTTP client: {}", super::smtp::error_chain(&e)))?;
        Ok(SmsGateway {
            http,
            method,
            url: cfg.url.clone(),
            headers,
            body: cfg.body.clone(),
            body_escape: cfg.body_escape(),
            success: parse_statuses(&cfg.success_status)?,
            origin,
        })
    }

    /// Sends one request; `vars` fill the URL and body templates.
    pub async fn send(&self, vars: &[(&str, &str)]) -> Result<(), DeliveryError> {
        let fail = |m: String| DeliveryError(format!("sms gateway {}: {m}", self.origin));
        let url = Zeroizing::new(template::render(&self.url, vars, Escape::Url));
        let mut req = self.http.request(self.method.clone(), url.as_str()).headers(self.headers.clone());
        if !self.body.is_empty() {
            req = req.body(template::render(&self.body, vars, self.body_escape));
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if self.success.iter().any(|(a, b)| (*a..=*b).contains(&status)) {
                    Ok(())
                } else {
                    Err(fail(format!("answered {status}")))
                }
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                Err(fail(format!("{what}: {}", super::smtp::error_chain(&e.without_url()))))
            }
        }
    }
}
