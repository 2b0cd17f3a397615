//! RADIUS: the UDP listeners (RFC 2865 PAP, RFC 5997 Status-Server,
//! accounting answered), RadSec (RFC 6614), and the request handler that
//! applies BlastRADIUS hardening and duplicate detection before the shared
//! authentication decision. The codec is `tessera-radius`.

pub mod clients;
pub mod dedup;
pub mod dictionary;
pub mod handler;
pub mod radsec;
pub mod secrets;
pub mod udp;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::node::Node;
use crate::tls_reload::{CertFiles, CertSource, Listener};
use anyhow::Context as _;
use handler::RadiusService;

/// How often clients and reply rules are re-read (the CLI may change them
/// while the server runs) and expired duplicate entries dropped.
const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// RadSec's certificate, key and client CA (`None` without
/// `radsec_listen`), reloadable: see `tls_reload.rs`. The certificate is
/// the HTTPS one (`tls_cert`, `tls_key`) unless `radsec_cert` is set.
pub fn radsec_certificates(
    cfg: &Config,
    tls_cert: &std::path::Path,
    tls_key: &std::path::Path,
    now: tessera_core::clock::Timestamp,
) -> anyhow::Result<Option<Arc<CertSource>>> {
    if cfg.radius.radsec_listen.is_empty() {
        return Ok(None);
    }
    let (cert, key) = if cfg.radius.radsec_cert.as_os_str().is_empty() {
        (tls_cert.to_path_buf(), tls_key.to_path_buf())
    } else {
        (cfg.radius.radsec_cert.clone(), cfg.radius.radsec_key.clone())
    };
    let files = CertFiles { cert, key, client_ca: Some(cfg.radius.radsec_client_ca.clone()) };
    let source = CertSource::open(Listener::Radsec, files, now).context("RadSec certificate")?;
    Ok(Some(source))
}

/// What `start` bound: (kind, address) per socket, for the console.
pub type Bound = Vec<(String, String)>;

/// Binds every configured RADIUS listener and starts serving; prints one
/// `listening radius|radius-accounting|radsec <addr>` line per socket.
pub async fn start(
    node: Arc<Node>,
    cfg: &Config,
    radsec_tls: Option<Arc<CertSource>>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<RadiusService>, Vec<JoinHandle<()>>, Bound)> {
    let mut bound = Bound::new();
    let svc = Arc::new(RadiusService::new(node, cfg)?);
    svc.install_config(RadiusService::prepare_config(cfg)?).await?;
    let mut tasks = Vec::new();
    let in_flight = Arc::new(Semaphore::new(cfg.radius.max_in_flight));
    let per_address = cfg.radius.sockets();
    for (kind, list) in [("radius", &cfg.radius.listen), ("radius-accounting", &cfg.radius.accounting_listen)] {
        for addr in Config::addrs(list) {
            let (addr, sockets) = udp::bind(addr, per_address)?;
            crate::runtime::announce(&format!("listening {kind} {addr}"));
            bound.push((format!("{kind} (udp)"), addr.to_string()));
            tracing::info!(%addr, kind, sockets = sockets.len(), clients = svc.clients.len(), "RADIUS listening (udp)");
            for socket in sockets {
                tasks.push(tokio::spawn(udp::serve(socket, svc.clone(), in_flight.clone(), shutdown.clone())));
            }
        }
    }
    if let Some(tls) = radsec_tls.filter(|_| !cfg.radius.radsec_listen.is_empty()) {
        for addr in Config::addrs(&cfg.radius.radsec_listen) {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}/tcp (RadSec): {e}"))?;
            let addr = listener.local_addr()?;
            crate::runtime::announce(&format!("listening radsec {addr}"));
            bound.push(("radsec (tcp)".into(), addr.to_string()));
            tracing::info!(%addr, "RadSec listening");
            tasks.push(tokio::spawn(radsec::serve(listener, tls.clone(), svc.clone(), shutdown.clone())));
        }
    }
    let maintenance = {
        let svc = svc.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(RELOAD_INTERVAL) => {}
                    _ = stop.changed() => return,
                }
                if let Err(e) = svc.reload().await {
                    tracing::warn!(error = %e, "reloading RADIUS clients and reply rules failed; keeping the old ones");
                }
                svc.sweep();
            }
        })
    };
    tasks.push(maintenance);
    Ok((svc, tasks, bound))
}
