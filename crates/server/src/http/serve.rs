//! The HTTPS accept loop: TLS (rustls) then HTTP/1.1 with keep-alive, one
//! task per connection, bounded by a connection semaphore, drained
//! gracefully on shutdown. The only place in the crate with TCP sockets.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::PeerAddr;
use super::replication::PeerCert;
use crate::tls_reload::{CertFiles, CertSource, Listener};

/// A client that opens a connection and never finishes the handshake is
/// cut off after this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to send the request head on a kept-alive connection.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// On shutdown, in-flight requests get this long to finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTPS listeners' certificate (`[http] tls_cert/tls_key`, or the
/// generated one), reloadable: see `tls_reload.rs`.
pub fn certificates(
    cert: &Path,
    key: &Path,
    now: tessera_core::clock::Timestamp,
) -> Result<Arc<CertSource>, crate::tls_reload::CertError> {
    CertSource::open(
        Listener::Https,
        CertFiles { cert: cert.to_path_buf(), key: key.to_path_buf(), client_ca: None },
        now,
    )
}

/// Serves `app` on `listener` until `shutdown` flips, then drains.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<CertSource>,
    app: Router,
    connections: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        // The certificate in effect now: a reload changes what the next
        // connection gets, this one keeps its configuration to the end.
        let acceptor = TlsAcceptor::from(tls.config());
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| tessera_tls::cert_sha256(c));
            serve_connection(tls, peer, PeerCert(cert), app, watcher).await;
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("some HTTPS connections did not finish within the drain timeout");
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    cert: PeerCert,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer));
        req.extensions_mut().insert(cert);
        app.clone().oneshot(req)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

pub async fn bind(addrs: &[SocketAddr]) -> std::io::Result<Vec<TcpListener>> {
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        out.push(
            TcpListener::bind(a)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {a}: {e}")))?,
        );
    }
    Ok(out)
}
