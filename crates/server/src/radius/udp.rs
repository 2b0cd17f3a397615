//! The UDP listeners: several sockets per address sharing its port
//! (SO_REUSEPORT, so the kernel spreads clients over them), each read by one
//! task that also drives the requests it admitted, bounded by a shared
//! in-flight limit.
//!
//! No task per packet and no hand-off between threads: a datagram is
//! received into the socket's reusable buffer, admitted from the borrowed
//! bytes (`RadiusService::admit`), and, if it needs the store, decided by a
//! future kept in that task's `FuturesUnordered`, polled in the same
//! `select!` as the receive. A slow decision (argon2, a directory) waits
//! there without holding up the receive loop, which only ever awaits the
//! socket or those futures.
//!
//! Shutdown: stop reading, then answer what is already queued in the
//! socket (every request a NAS sent before the signal), then wait for the
//! requests being decided — all within [`DRAIN_TIMEOUT`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::handler::{Admitted, Pending, RadiusService, Transport};

/// RFC 2865 §3: a RADIUS packet is at most 4096 octets.
const MAX_DATAGRAM: usize = 4096;
/// On shutdown, queued requests and requests being decided get this long
/// to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `count` UDP sockets to `addr`, all on one port, and returns the
/// address they share. With port 0 the first socket picks the port and the
/// others join it. Errors name the address.
///
/// Only Linux balances datagrams over SO_REUSEPORT sockets (by the
/// client's address and port, so one NAS keeps its socket); elsewhere one
/// socket is bound. With one socket SO_REUSEPORT is not set, so a port
/// held by anyone fails as before. With several, a second process of the
/// same user that also sets it could join the port (the kernel refuses
/// other users); a port held without it still fails here.
pub fn bind(addr: SocketAddr, count: usize) -> std::io::Result<(SocketAddr, Vec<UdpSocket>)> {
    let count = if cfg!(target_os = "linux") { count.max(1) } else { 1 };
    let named =
        |e: std::io::Error, a: SocketAddr| std::io::Error::new(e.kind(), format!("cannot listen on {a}/udp: {e}"));
    let first = open(addr, count > 1).map_err(|e| named(e, addr))?;
    let shared = first.local_addr()?;
    let mut out = Vec::with_capacity(count);
    out.push(first);
    for _ in 1..count {
        out.push(open(shared, true).map_err(|e| named(e, shared))?);
    }
    Ok((shared, out))
}

fn open(addr: SocketAddr, reuse_port: bool) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(target_os = "linux")]
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = reuse_port;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

pub async fn serve(
    socket: UdpSocket,
    svc: Arc<RadiusService>,
    in_flight: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (socket, svc) = (&socket, &*svc);
    // One buffer per socket, reused: `admit` reads the datagram in place,
    // and what outlives it (a `Pending`) owns its decoded fields.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut deciding = FuturesUnordered::new();
    loop {
        let (n, src) = tokio::select! {
            // Stop promptly once asked: what is queued is answered below.
            biased;
            _ = shutdown.changed() => break,
            Some(()) = deciding.next(), if !deciding.is_empty() => continue,
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
            super::handler::count_oversized(svc);
            continue;
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            // Overloaded: dropping lets the NAS retry or fail over.
            super::handler::count_overload(svc, src);
            continue;
        };
        match svc.admit(&buf[..n], src, Transport::Udp) {
            Admitted::Done(reply) => {
                drop(permit);
                send(socket, reply, src).await;
            }
            Admitted::Decide(pending) => deciding.push(answer(svc, socket, pending, src, permit)),
        }
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        // Requests already queued in the socket were sent before we
        // stopped: answer them too (waiting for capacity rather than
        // dropping, while our own decisions go on and free some).
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
            queued += 1;
            let pending = match svc.admit(&buf[..n], src, Transport::Udp) {
                Admitted::Done(reply) => {
                    send(socket, reply, src).await;
                    continue;
                }
                Admitted::Decide(p) => p,
            };
            let permit = loop {
                tokio::select! {
                    p = in_flight.clone().acquire_owned() => break p,
                    Some(()) = deciding.next(), if !deciding.is_empty() => {}
                }
            };
            let Ok(permit) = permit else { break };
            deciding.push(answer(svc, socket, pending, src, permit));
        }
        if queued > 0 {
            tracing::info!(queued, "answering RADIUS requests queued before shutdown");
        }
        // Let requests being decided finish (their answers are already durable).
        while deciding.next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some RADIUS requests were still being decided after the drain timeout");
    }
}

/// Decides one request (holding its in-flight permit) and sends the reply.
/// One function, so that both places that push to `deciding` push one type.
async fn answer(
    svc: &RadiusService,
    socket: &UdpSocket,
    pending: Pending,
    src: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    let reply = svc.decide(pending).await;
    drop(permit);
    send(socket, reply, src).await;
}

async fn send(socket: &UdpSocket, reply: Option<Vec<u8>>, src: SocketAddr) {
    if let Some(reply) = reply
        && let Err(e) = socket.send_to(&reply, src).await
    {
        tracing::debug!(%src, error = %e, "RADIUS reply could not be sent");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use tessera_radius::{Code, MessageAuthenticator, Packet, attr, hide_password, verify_response};

    use super::*;
    use crate::config::{Config, RadiusClientConfig};

    const SECRET: &str = "udp-test-shared-secret";

    /// An initialised node in a temporary directory with one RADIUS client
    /// (127.0.0.1), serving `listen` with `sockets` sockets per address.
    async fn serving(
        sockets: usize,
    ) -> (tempfile::TempDir, SocketAddr, watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::default();
        cfg.server.data_dir = dir.path().join("data");
        cfg.master_key.file = dir.path().join("tessera.key");
        cfg.radius.listen = vec!["127.0.0.1:0".into()];
        cfg.radius.sockets_per_listener = sockets;
        cfg.radius.client = vec![RadiusClientConfig {
            name: "loopback".into(),
            address: "127.0.0.1/32".into(),
            secret: Some(SECRET.into()),
            secret_file: None,
            message_authenticator: "require".into(),
            default_realm: None,
        }];
        let env = BTreeMap::new();
        crate::node::init(&cfg, &env).await.unwrap();
        // The server's hasher: argon2 off the network tasks, as in `serve`.
        let hasher = Arc::new(crate::hasher::BlockingHasher::for_this_machine());
        let node = Arc::new(crate::node::open(&cfg, &env, hasher).await.unwrap());
        let (stop, stop_rx) = watch::channel(false);
        let (_svc, tasks, bound) = super::super::start(node, &cfg, None, stop_rx).await.unwrap();
        let addr = bound.iter().find(|(k, _)| k == "radius (udp)").unwrap().1.parse().unwrap();
        (dir, addr, stop, tasks)
    }

    fn status_server(id: u8) -> (Vec<u8>, [u8; 16]) {
        let auth = [id ^ 0x5a; 16];
        (Packet::new(Code::StatusServer, id, auth).encode_request(SECRET.as_bytes(), true).unwrap(), auth)
    }

    fn access_request(id: u8, user: &str, password: &str) -> (Vec<u8>, [u8; 16]) {
        let auth = [id; 16];
        let mut p = Packet::new(Code::AccessRequest, id, auth);
        p.push(attr::USER_NAME, user.as_bytes());
        p.push(attr::USER_PASSWORD, hide_password(SECRET.as_bytes(), &auth, password.as_bytes()).unwrap());
        (p.encode_request(SECRET.as_bytes(), true).unwrap(), auth)
    }

    /// The next reply, checked against the request's authenticator.
    async fn reply(client: &UdpSocket, requests: &[(u8, [u8; 16])]) -> Packet {
        let mut buf = [0u8; MAX_DATAGRAM];
        let n = tokio::time::timeout(Duration::from_secs(10), client.recv(&mut buf)).await.unwrap().unwrap();
        let p = Packet::decode(&buf[..n]).unwrap();
        let (_, auth) = requests.iter().find(|(id, _)| *id == p.identifier).unwrap();
        assert_eq!(verify_response(&buf[..n], auth, SECRET.as_bytes()).unwrap(), MessageAuthenticator::Valid);
        p
    }

    #[tokio::test]
    async fn radius_sockets_share_the_port_and_a_taken_port_is_refused() {
        let (addr, sockets) = bind("127.0.0.1:0".parse().unwrap(), 4).unwrap();
        assert_ne!(addr.port(), 0);
        let expected = if cfg!(target_os = "linux") { 4 } else { 1 };
        assert_eq!(sockets.len(), expected);
        for s in &sockets {
            assert_eq!(s.local_addr().unwrap(), addr);
        }
        // A port someone holds without SO_REUSEPORT stays theirs.
        let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let taken = holder.local_addr().unwrap();
        for count in [1, 4] {
            let e = bind(taken, count).err().unwrap();
            assert!(e.to_string().starts_with(&format!("cannot listen on {taken}/udp: ")), "{e}");
        }
    }

    /// Four sockets on one port, 48 clients (each its own source port, so
    /// the kernel spreads them over the sockets), each sending a
    /// Status-Server and an Access-Request: every one is answered, and a
    /// SIGTERM-style stop ends every socket's task.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn radius_requests_from_many_clients_over_four_sockets_are_all_answered() {
        let (_dir, addr, stop, tasks) = serving(4).await;
        let mut clients = Vec::new();
        for i in 0..48u8 {
            clients.push(tokio::spawn(async move {
                let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                c.connect(addr).await.unwrap();
                let (raw, auth) = status_server(i);
                c.send(&raw).await.unwrap();
                let r = reply(&c, &[(i, auth)]).await;
                assert_eq!((r.code, r.identifier), (Code::AccessAccept, i));
                let id = i + 100;
                let (raw, auth) = access_request(id, &format!("nobody{i}"), "123456");
                c.send(&raw).await.unwrap();
                let r = reply(&c, &[(id, auth)]).await;
                assert_eq!((r.code, r.identifier), (Code::AccessReject, id));
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        stop.send(true).unwrap();
        for t in tasks {
            tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(2), t).await.unwrap().unwrap();
        }
    }

    /// One socket: a request that waits for argon2 (an unknown user with a
    /// password-shaped input gets a dummy verification) does not hold up a
    /// Status-Server sent after it on the same socket.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn radius_a_slow_request_does_not_block_its_socket() {
        let (_dir, addr, stop, tasks) = serving(1).await;
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.connect(addr).await.unwrap();
        let (slow, slow_auth) = access_request(1, "nobody", "a long password and 123456");
        let (quick, quick_auth) = status_server(2);
        let sent = [(1, slow_auth), (2, quick_auth)];
        c.send(&slow).await.unwrap();
        c.send(&quick).await.unwrap();
        let first = reply(&c, &sent).await;
        assert_eq!((first.code, first.identifier), (Code::AccessAccept, 2), "Status-Server answered first");
        let second = reply(&c, &sent).await;
        assert_eq!((second.code, second.identifier), (Code::AccessReject, 1));
        stop.send(true).unwrap();
        for t in tasks {
            tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(2), t).await.unwrap().unwrap();
        }
    }
}
