//! RadSec (RADIUS over TLS, RFC 6614): TCP with mutual TLS; client
//! certificates must chain to the configured CA, and the peer's address
//! must belong to a registered RADIUS client. Requests on one connection
//! are decided concurrently and answered as they complete.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use super::handler::{RadiusService, Transport};
use crate::tls_reload::CertSource;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A RadSec connection with no request for this long is closed; clients
/// keep connections alive with Status-Server.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Requests decided at once per connection.
const PER_CONNECTION_IN_FLIGHT: usize = 256;
const MAX_CONNECTIONS: usize = 1024;
/// On shutdown, connections get this long to answer the requests they read.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn serve(
    listener: TcpListener,
    tls: Arc<CertSource>,
    svc: Arc<RadiusService>,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "RadSec accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many RadSec connections; refused");
            continue;
        };
        // Only registered clients may even attempt a handshake.
        if svc.clients.lookup(peer.ip()).is_none() {
            tracing::warn!(%peer, "RadSec connection from an unknown client; closed");
            continue;
        }
        // The certificate and client CA in effect now (`tls_reload.rs`);
        // open connections keep theirs.
        let acceptor = TlsAcceptor::from(tls.config());
        let svc = svc.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "RadSec TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "RadSec TLS handshake timed out");
                    return;
                }
            };
            connection(tls, peer, svc, stop).await;
        });
    }
    // Each connection stops reading, answers what it read, then releases
    // its permit.
    drop(listener);
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.acquire_many(all)).await.is_err() {
        tracing::warn!("some RadSec requests were still being decided after the drain timeout");
    }
}

async fn connection<S>(stream: S, peer: SocketAddr, svc: Arc<RadiusService>, mut stop: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(PER_CONNECTION_IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            if wr.write_all(&reply).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let limit = Arc::new(Semaphore::new(PER_CONNECTION_IN_FLIGHT));
    loop {
        let mut header = [0u8; 4];
        let read = tokio::select! {
            r = tokio::time::timeout(IDLE_TIMEOUT, rd.read_exact(&mut header)) => r,
            _ = stop.changed() => break,
        };
        match read {
            Ok(Ok(_)) => {}
            _ => break, // closed, error or idle
        }
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        if !(20..=4096).contains(&len) {
            tracing::warn!(%peer, len, "RadSec record with an impossible length; connection closed");
            break;
        }
        let mut packet = vec![0u8; len];
        packet[..4].copy_from_slice(&header);
        if rd.read_exact(&mut packet[4..]).await.is_err() {
            break;
        }
        let Ok(permit) = limit.clone().acquire_owned().await else { break };
        let svc = svc.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Some(reply) = svc.handle(&packet, peer, Transport::RadSec).await {
                let _ = tx.send(reply).await;
            }
            drop(permit);
        });
    }
    drop(tx);
    let _ = writer.await;
}
