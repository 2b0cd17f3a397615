//! One keep-alive HTTP/1.1 connection per worker (hyper's low-level client
//! over TCP or rustls), with the request shapes of tessera and privacyIDEA.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::accounts::push_code;

/// Which server's validate call to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST /api/v1/validate`, JSON `{"username","password"}`.
    Tessera,
    /// `POST /validate/check`, form `serial=…&pass=…`.
    PrivacyIdea,
}

/// The server's verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject,
    /// HTTP 200 with a body that is neither (or a non-200 status).
    Other,
}

impl Protocol {
    pub fn path(self) -> &'static str {
        match self {
            Protocol::Tessera => "/api/v1/validate",
            Protocol::PrivacyIdea => "/validate/check",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::Tessera => "application/json",
            Protocol::PrivacyIdea => "application/x-www-form-urlencoded",
        }
    }

    /// Request body for `name` (a username or a serial; checked to need no escaping) and a 6-digit code.
    pub fn body(self, name: &str, code: u32) -> Bytes {
        let mut v = Vec::with_capacity(40 + name.len());
        match self {
            Protocol::Tessera => {
                v.extend_from_slice(b"{\"username\":\"");
                v.extend_from_slice(name.as_bytes());
                v.extend_from_slice(b"\",\"password\":\"");
                push_code(&mut v, code);
                v.extend_from_slice(b"\"}");
            }
            Protocol::PrivacyIdea => {
                v.extend_from_slice(b"serial=");
                v.extend_from_slice(name.as_bytes());
                v.extend_from_slice(b"&pass=");
                push_code(&mut v, code);
            }
        }
        Bytes::from(v)
    }

    pub fn verdict(self, status: StatusCode, body: &[u8]) -> Verdict {
        if status != StatusCode::OK {
            return Verdict::Other;
        }
        match self {
            Protocol::Tessera => {
                // Fast path for the exact reply; fall back to parsing.
                if body == br#"{"result":"accept"}"# {
                    return Verdict::Accept;
                }
                match serde_json::from_slice::<serde_json::Value>(body).ok().as_ref().and_then(|v| v["result"].as_str())
                {
                    Some("accept") => Verdict::Accept,
                    Some("reject") => Verdict::Reject,
                    _ => Verdict::Other,
                }
            }
            Protocol::PrivacyIdea => {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return Verdict::Other };
                let r = &v["result"];
                match (r["status"].as_bool(), r["value"].as_bool()) {
                    (Some(true), Some(true)) => Verdict::Accept,
                    (Some(true), Some(false)) => Verdict::Reject,
                    _ => Verdict::Other,
                }
            }
        }
    }
}

/// Where and how to connect.
pub struct Target {
    pub addr: SocketAddr,
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
    pub host: HeaderValue,
    pub uri: Uri,
    pub protocol: Protocol,
    content_type: HeaderValue,
}

impl Target {
    /// `url` is `http://host:port` or `https://host:port`; `ca` is required for https
    /// and is the only trusted root.
    pub async fn new(url: &str, ca: Option<&Path>, protocol: Protocol) -> anyhow::Result<Target> {
        let u: Uri = url.parse().with_context(|| format!("bad url {url}"))?;
        let https = match u.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => bail!("url must start with http:// or https://"),
        };
        let host = u.host().ok_or_else(|| anyhow!("url has no host"))?.to_string();
        let port = u.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addr = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .ok_or_else(|| anyhow!("{host} resolves to nothing"))?;
        let tls = if https {
            let ca = ca.ok_or_else(|| anyhow!("https needs --ca CERT.pem"))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))? {
                roots.add(cert.with_context(|| format!("parsing {}", ca.display()))?)?;
            }
            if roots.is_empty() {
                bail!("{}: no certificates", ca.display());
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|e| anyhow!("server name {host}: {e}"))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        let authority = u.authority().map(|a| a.as_str().to_string()).unwrap_or_else(|| format!("{host}:{port}"));
        Ok(Target {
            addr,
            tls,
            host: HeaderValue::from_str(&authority)?,
            uri: Uri::from_static(protocol.path()),
            protocol,
            content_type: HeaderValue::from_static(protocol.content_type()),
        })
    }

    /// Opens a connection (TCP_NODELAY, TLS if configured) and spawns its driver task.
    pub async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let tcp = TcpStream::connect(self.addr).await.with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), tcp).await.context("TLS handshake")?;
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(sender)
            }
            None => {
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(sender)
            }
        }
    }

    pub fn request(&self, body: Bytes) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        h.insert(CONTENT_TYPE, self.content_type.clone());
        req
    }
}

/// Outcome of one exchange on a connection.
pub enum Exchange {
    /// A complete response; `close` when the server will close the connection.
    Response { status: StatusCode, body: Bytes, close: bool },
    /// The connection was already closed and the request was not sent: reconnect and retry it.
    NotSent,
    /// The request may have reached the server but no complete response came back.
    Failed(anyhow::Error),
}

/// Which HTTP client implementation a worker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// `raw`: the minimal one-task client in `raw.rs` (cheapest).
    Raw,
    /// hyper's low-level HTTP/1.1 client (a driver task per connection).
    Hyper,
}

/// An open keep-alive connection.
pub enum Conn {
    Hyper(SendRequest<Full<Bytes>>),
    Raw(Box<crate::raw::RawConn>, Arc<[u8]>),
}

impl Conn {
    pub async fn open(target: &Target, kind: ClientKind) -> anyhow::Result<Conn> {
        Ok(match kind {
            ClientKind::Hyper => Conn::Hyper(target.connect().await?),
            ClientKind::Raw => Conn::Raw(
                Box::new(crate::raw::RawConn::connect(target).await?),
                crate::raw::request_head(target).into(),
            ),
        })
    }

    /// Sends one request with `body` and reads the whole response.
    pub async fn exchange(&mut self, target: &Target, body: Bytes) -> Exchange {
        match self {
            Conn::Hyper(sender) => {
                if sender.ready().await.is_err() {
                    return Exchange::NotSent;
                }
                let resp = match sender.try_send_request(target.request(body)).await {
                    Ok(r) => r,
                    Err(mut e) => {
                        return match e.take_message() {
                            Some(_) => Exchange::NotSent,
                            None => Exchange::Failed(e.into_error().into()),
                        };
                    }
                };
                let status = resp.status();
                let close = resp.headers().get(CONNECTION).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                match resp.into_body().collect().await {
                    Ok(b) => Exchange::Response { status, body: b.to_bytes(), close },
                    Err(e) => Exchange::Failed(e.into()),
                }
            }
            Conn::Raw(conn, head) => {
                if let Err(e) = conn.send(head, &body).await {
                    return Exchange::Failed(e.into());
                }
                match conn.recv().await {
                    Ok(r) => Exchange::Response { status: r.status, body: r.body, close: r.close },
                    Err(e) => Exchange::Failed(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(
            &Protocol::Tessera.body("bench000001", 12345)[..],
            br#"{"username":"bench000001","password":"012345"}"#
        );
        assert_eq!(&Protocol::PrivacyIdea.body("BENCH00001", 999999)[..], b"serial=BENCH00001&pass=999999");
    }

    #[test]
    fn verdicts() {
        let t = Protocol::Tessera;
        assert_eq!(t.verdict(StatusCode::OK, br#"{"result":"accept"}"#), Verdict::Accept);
        assert_eq!(t.verdict(StatusCode::OK, br#"{"result":"reject","reason":"access_denied"}"#), Verdict::Reject);
        assert_eq!(t.verdict(StatusCode::OK, br#"{"result":"challenge"}"#), Verdict::Other);
        assert_eq!(t.verdict(StatusCode::SERVICE_UNAVAILABLE, br#"{"result":"accept"}"#), Verdict::Other);
        let p = Protocol::PrivacyIdea;
        let ok = br#"{"id":1,"jsonrpc":"2.0","result":{"authentication":"ACCEPT","status":true,"value":true}}"#;
        let no = br#"{"id":1,"jsonrpc":"2.0","result":{"authentication":"REJECT","status":true,"value":false}}"#;
        assert_eq!(p.verdict(StatusCode::OK, ok), Verdict::Accept);
        assert_eq!(p.verdict(StatusCode::OK, no), Verdict::Reject);
        assert_eq!(p.verdict(StatusCode::OK, b"<html>"), Verdict::Other);
    }
}
