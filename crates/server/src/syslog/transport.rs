//! The syslog sockets: UDP (RFC 5426, one message per datagram), TCP
//! (RFC 6587 octet-counting frames) and a local datagram socket
//! (`/dev/log` style). One task owns the socket and drains the queue, so
//! nobody producing a message ever waits on the network.
//!
//! While the destination cannot be reached (TCP refused, the unix socket
//! missing) the task holds the message it has and retries with a doubling
//! back-off; the queue fills behind it, and from then on log events are
//! dropped and counted while the audit forwarder simply waits (audit
//! records stay in the database). A UDP send error drops that message.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket, UnixDatagram};
use tokio::sync::{mpsc, watch};

use super::format::octet_counted;

/// Time limits on connecting, and on handing one message to the socket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect back-off: from this…
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// …doubling up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// At shutdown, what is queued is sent for at most this long.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Where messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `host:port`, resolved at each (re)connect.
    Udp(String),
    Tcp(String),
    /// A datagram socket such as `/dev/log`.
    Unix(PathBuf),
}

impl Target {
    /// Longest message for this transport: RFC 5426 asks UDP receivers
    /// for 2048 octets; rsyslog's default limit is 8 KiB.
    pub fn max_message(&self) -> usize {
        match self {
            Target::Udp(_) => 2048,
            Target::Tcp(_) | Target::Unix(_) => 8192,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Udp(a) => write!(f, "udp://{a}"),
            Target::Tcp(a) => write!(f, "tcp://{a}"),
            Target::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages handed to the socket.
    pub sent: AtomicU64,
    /// Messages dropped: queue full (log events) or a UDP send error.
    pub dropped: AtomicU64,
}

impl Stats {
    pub const fn new() -> Stats {
        Stats { sent: AtomicU64::new(0), dropped: AtomicU64::new(0) }
    }
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Unix(UnixDatagram),
}

async fn connect(target: &Target) -> std::io::Result<Conn> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
    match target {
        Target::Udp(addr) => {
            let peer = tokio::net::lookup_host(addr.as_str())
                .await?
                .next()
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
            let local = if peer.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let s = UdpSocket::bind(local).await?;
            s.connect(peer).await?;
            Ok(Conn::Udp(s))
        }
        Target::Tcp(addr) => {
            let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr.as_str()))
                .await
                .map_err(|_| timed_out())??;
            s.set_nodelay(true)?;
            Ok(Conn::Tcp(s))
        }
        Target::Unix(path) => {
            let s = UnixDatagram::unbound()?;
            s.connect(path)?;
            Ok(Conn::Unix(s))
        }
    }
}

async fn send(conn: &mut Conn, msg: &str) -> std::io::Result<()> {
    let write = async {
        match conn {
            Conn::Udp(s) => s.send(msg.as_bytes()).await.map(|_| ()),
            Conn::Unix(s) => s.send(msg.as_bytes()).await.map(|_| ()),
            Conn::Tcp(s) => s.write_all(&octet_counted(msg)).await,
        }
    };
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))?
}

/// Sends queued messages until `stop`, then flushes what is queued (for at
/// most [`FLUSH_TIMEOUT`]) and returns.
pub async fn run(target: Target, mut rx: mpsc::Receiver<String>, stats: &Stats, mut stop: watch::Receiver<bool>) {
    let mut conn: Option<Conn> = None;
    let mut held: Option<String> = None;
    let mut backoff = MIN_BACKOFF;
    let mut down = false;
    loop {
        let msg = match held.take() {
            Some(m) => m,
            None => tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => return,
                },
                _ = stop.changed() => break,
            },
        };
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connect(&target).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    if !down {
                        tracing::warn!(dest = %target, error = %e, "syslog destination unreachable; retrying");
                        down = true;
                    }
                    held = Some(msg);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => break,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        match send(c, &msg).await {
            Ok(()) => {
                stats.sent.fetch_add(1, Ordering::Relaxed);
                if down {
                    tracing::info!(dest = %target, "syslog destination reachable again");
                    down = false;
                }
                backoff = MIN_BACKOFF;
            }
            Err(e) => {
                conn = None;
                if matches!(target, Target::Udp(_)) {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if !down {
                    tracing::warn!(dest = %target, error = %e, "syslog send failed; reconnecting");
                    down = true;
                }
                held = Some(msg);
                // A peer that accepts and then fails every write must not
                // make this a busy loop of reconnects.
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    // Stopping: what is held and queued goes out if the destination takes it soon.
    let flush = async {
        let mut pending: Vec<String> = held.into_iter().collect();
        while let Ok(m) = rx.try_recv() {
            pending.push(m);
        }
        if pending.is_empty() {
            return;
        }
        let mut c = match conn {
            Some(c) => c,
            None => match connect(&target).await {
                Ok(c) => c,
                Err(_) => return,
            },
        };
        for m in pending {
            if send(&mut c, &m).await.is_err() {
                return;
            }
            stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        if let Conn::Tcp(s) = &mut c {
            let _ = s.shutdown().await;
        }
    };
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, flush).await;
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    static STATS: Stats = Stats::new();

    async fn frame(c: &mut TcpStream) -> String {
        let mut len = Vec::new();
        loop {
            let b = c.read_u8().await.unwrap();
            if b == b' ' {
                break;
            }
            len.push(b);
        }
        let mut msg = vec![0; std::str::from_utf8(&len).unwrap().parse().unwrap()];
        c.read_exact(&mut msg).await.unwrap();
        String::from_utf8(msg).unwrap()
    }

    #[tokio::test]
    async fn tcp_reconnects_after_the_peer_goes_away_and_flushes_at_stop() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target::Tcp(l.local_addr().unwrap().to_string());
        let (tx, rx) = mpsc::channel(16);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(target, rx, &STATS, stop_rx));
        tx.send("<13>1 - - - - - - one".to_string()).await.unwrap();
        let (mut c, _) = l.accept().await.unwrap();
        assert_eq!(frame(&mut c).await, "<13>1 - - - - - - one");
        drop(c);
        // Writes into a closed connection may vanish until the sender
        // notices; keep sending until one arrives over a new connection.
        let feeder = {
            let tx = tx.clone();
            tokio::spawn(async move {
                while tx.send("<13>1 - - - - - - two".to_string()).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let (mut c, _) = tokio::time::timeout(Duration::from_secs(10), l.accept()).await.unwrap().unwrap();
        assert_eq!(frame(&mut c).await, "<13>1 - - - - - - two");
        feeder.abort();
        let _ = feeder.await;
        // stopping: what is queued still goes out
        tx.send("<13>1 - - - - - - last".to_string()).await.unwrap();
        stop.send(true).unwrap();
        task.await.unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).await.unwrap();
        assert!(String::from_utf8(rest).unwrap().ends_with("<13>1 - - - - - - last"));
        assert!(STATS.sent.load(Ordering::Relaxed) >= 3);
    }
}
