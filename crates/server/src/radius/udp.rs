//! The UDP listeners: one task per socket reading datagrams, one task per
//! request deciding it, bounded by a shared in-flight limit.
//!
//! Shutdown: stop reading, then answer what is already queued in the
//! socket (every request a NAS sent before the signal), then wait for the
//! requests being decided — all within [`DRAIN_TIMEOUT`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, watch};

use super::handler::{RadiusService, Transport};

/// RFC 2865 §3: a RADIUS packet is at most 4096 octets.
const MAX_DATAGRAM: usize = 4096;
/// On shutdown, queued requests and requests being decided get this long
/// to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn bind(addrs: &[SocketAddr]) -> std::io::Result<Vec<Arc<UdpSocket>>> {
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        let s = UdpSocket::bind(a)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {a}/udp: {e}")))?;
        out.push(Arc::new(s));
    }
    Ok(out)
}

pub async fn serve(
    socket: Arc<UdpSocket>,
    svc: Arc<RadiusService>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let (n, src) = tokio::select! {
            // Stop promptly once asked: what is queued is answered below.
            biased;
            _ = shutdown.changed() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on Linux; not fatal.
                    tracing::debug!(error = %e, "RADIUS recv failed");
                    continue;
                }
            },
        };
        if n > MAX_DATAGRAM {
            super::handler::count_oversized(&svc);
            continue;
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            // Overloaded: dropping lets the NAS retry or fail over.
            super::handler::count_overload(&svc, src);
            continue;
        };
        spawn_handler(&socket, &svc, buf[..n].to_vec(), src, permit);
    }
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    let drained = tokio::time::timeout_at(deadline, async {
        // Requests already queued in the socket were sent before we
        // stopped: answer them too (waiting for capacity rather than dropping).
        let mut queued = 0u64;
        loop {
            let (n, src) = match socket.try_recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => continue,
            };
            if n > MAX_DATAGRAM {
                continue;
            }
            let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
            spawn_handler(&socket, &svc, buf[..n].to_vec(), src, permit);
            queued += 1;
        }
        if queued > 0 {
            tracing::info!(queued, "answering RADIUS requests queued before shutdown");
        }
        // Let requests being decided finish (their answers are already durable).
        let all = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
        drop(in_flight.acquire_many(all).await);
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some RADIUS requests were still being decided after the drain timeout");
    }
}

fn spawn_handler(
    socket: &Arc<UdpSocket>,
    svc: &Arc<RadiusService>,
    data: Vec<u8>,
    src: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let socket = socket.clone();
    let svc = svc.clone();
    tokio::spawn(async move {
        if let Some(reply) = svc.handle(&data, src, Transport::Udp).await
            && let Err(e) = socket.send_to(&reply, src).await
        {
            tracing::debug!(%src, error = %e, "RADIUS reply could not be sent");
        }
        drop(permit);
    });
}
