//! Certificates that change without a restart (issue 19): the HTTPS and
//! RadSec certificate, key and (RadSec) client CA files are re-read on
//! SIGHUP and whenever their content changes (polled every
//! `[http] tls_watch_seconds`).
//!
//! **Why the whole `ServerConfig` is swapped** (an `ArcSwap<ServerConfig>`
//! read once per accepted connection) rather than a `ResolvesServerCert`
//! over an `ArcSwap<CertifiedKey>`: RadSec's client CA lives in the
//! configuration's client-certificate verifier, which a certificate
//! resolver cannot change (and `ClientCertVerifier::root_hint_subjects`
//! borrows from the verifier, so it cannot sit behind a swap either); one
//! mechanism serves both listeners. A fresh configuration also brings a
//! fresh session cache, so no client resumes into a session made under the
//! old certificate: every connection after a reload sees the new one. A
//! connection keeps the `Arc<ServerConfig>` it was accepted with, so
//! established connections (and their keep-alive requests) are untouched.
//! The cost is one atomic load per accept.
//!
//! **Safety.** A change is applied only once the new files form a usable
//! pair: every certificate parses, the key parses, the key is the
//! certificate's (public keys compared), the client CA parses, and rustls
//! accepts the configuration. An expired (or not yet valid) certificate is
//! applied with a warning. Anything else — an administrator who copied the
//! certificate and not yet the key, a truncated file — is refused: the old
//! certificate keeps being served, the error names the file (never key
//! material), `tessera_tls_reload_failures_total` counts it, `/readyz`
//! shows the listener degraded, and the next change (or SIGHUP) tries
//! again.

use std::hash::{Hash as _, Hasher as _};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use tessera_core::clock::{Clock, Timestamp};
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::health::{self, Degradation};

/// Certificate, key and CA files larger than this are refused (a path
/// pointing at the wrong file must not be read into memory whole).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Which listener a certificate serves (the `listener` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The HTTPS listeners (API, console, portal).
    Https,
    /// RadSec (client certificate required).
    Radsec,
}

impl Listener {
    pub const ALL: [Listener; 2] = [Listener::Https, Listener::Radsec];

    pub fn label(self) -> &'static str {
        match self {
            Listener::Https => "https",
            Listener::Radsec => "radsec",
        }
    }

    fn degradation(self) -> Degradation {
        match self {
            Listener::Https => Degradation::HttpsCertificate,
            Listener::Radsec => Degradation::RadsecCertificate,
        }
    }
}

/// What made a reload look at the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP: the files are loaded again even if a failed attempt saw the
    /// same content.
    Signal,
    /// The periodic check: only content that changed is loaded.
    Poll,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::Poll => "file change",
        }
    }
}

/// Why a certificate pair was not loaded. Names files, never their content.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: String },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: String },
    #[error("{path}: not a valid PEM certificate chain: {error}")]
    BadCertificate { path: String, error: String },
    #[error("{path}: no usable PEM private key in it: {error}")]
    BadKey { path: String, error: String },
    #[error(
        "the private key in {key} does not belong to the certificate in {cert} (their public keys differ; \
         was one of them replaced without the other?)"
    )]
    Mismatch { cert: String, key: String },
    #[error("{path}: not a valid PEM CA certificate file: {error}")]
    BadCa { path: String, error: String },
    #[error("{cert} and {key} do not form a usable TLS configuration: {error}")]
    Config { cert: String, key: String, error: String },
}

/// The files one listener's TLS configuration is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// RadSec: the CA client certificates must chain to (required then).
    pub client_ca: Option<PathBuf>,
}

/// A certificate pair that passed every check.
#[derive(Debug)]
pub struct LoadedPair {
    pub certified: Arc<CertifiedKey>,
    /// SHA-256 of the leaf certificate, `ab:cd:…`.
    pub fingerprint: String,
    pub not_before: i64,
    pub not_after: i64,
}

impl LoadedPair {
    /// Whether the leaf certificate is valid at `now` (Unix seconds).
    pub fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// The raw bytes of a listener's files, read once so the change check and
/// the parse see the same content.
struct Raw {
    cert: Vec<u8>,
    key: Zeroizing<Vec<u8>>,
    client_ca: Option<Vec<u8>>,
}

impl Raw {
    fn read(files: &CertFiles) -> Result<Raw, CertError> {
        Ok(Raw {
            cert: read_bounded(&files.cert)?,
            key: Zeroizing::new(read_bounded(&files.key)?),
            client_ca: files.client_ca.as_deref().map(read_bounded).transpose()?,
        })
    }

    /// A digest for change detection only (not a security boundary: the
    /// files are parsed again whenever it differs).
    fn digest(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.cert.hash(&mut h);
        self.key.as_slice().hash(&mut h);
        self.client_ca.hash(&mut h);
        h.finish()
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, CertError> {
    let err = |e: std::io::Error| CertError::Read { path: display(path), error: e.to_string() };
    let f = std::fs::File::open(path).map_err(err)?;
    let mut out = Vec::new();
    f.take(MAX_FILE_BYTES + 1).read_to_end(&mut out).map_err(err)?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(CertError::Read { path: display(path), error: format!("larger than {MAX_FILE_BYTES} bytes") });
    }
    Ok(out)
}

/// A PEM error in words that cannot carry file content (the key file's
/// lines must never reach a log).
fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line (truncated file?)".into(),
        pem::Error::IllegalSectionStart { .. } => "malformed PEM BEGIN line".into(),
        pem::Error::Base64Decode(_) => "invalid base64 in a PEM section".into(),
        pem::Error::NoItemsFound => "no PEM section of the expected type".into(),
        pem::Error::Io(e) => e.kind().to_string(),
        _ => "malformed PEM".into(),
    }
}

/// Whether a PEM file ends with a complete `-----END …-----` line (then
/// only whitespace). A file still being written usually does not; without
/// this check a chain cut between two certificates would load as a shorter
/// chain.
fn ends_complete(pem_bytes: &[u8]) -> bool {
    let end = pem_bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
    let text = &pem_bytes[..end];
    let last_line = text.rsplit(|b| *b == b'\n').next().unwrap_or_default();
    last_line.starts_with(b"-----END ") && last_line.ends_with(b"-----")
}

const INCOMPLETE: &str = "the file does not end with a complete PEM END line (still being written?)";

/// Parses and checks a certificate chain and its key: every certificate is
/// X.509, the key loads, and it is the leaf's key. Validity dates are
/// reported, not enforced.
pub fn load_pair(cert_pem: &[u8], key_pem: &[u8], cert_path: &Path, key_path: &Path) -> Result<LoadedPair, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::BadCertificate { path: display(cert_path), error: pem_error(&e) })?;
    let Some(leaf) = chain.first() else {
        return Err(CertError::NoCertificate { path: display(cert_path) });
    };
    if !ends_complete(cert_pem) {
        return Err(CertError::BadCertificate { path: display(cert_path), error: INCOMPLETE.into() });
    }
    let mut validity = None;
    for (i, c) in chain.iter().enumerate() {
        let (rest, parsed) = x509_parser::parse_x509_certificate(c.as_ref()).map_err(|e| {
            CertError::BadCertificate { path: display(cert_path), error: format!("certificate {}: {e}", i + 1) }
        })?;
        if !rest.is_empty() {
            return Err(CertError::BadCertificate {
                path: display(cert_path),
                error: format!("certificate {}: trailing bytes after the certificate", i + 1),
            });
        }
        if i == 0 {
            let v = parsed.validity();
            validity = Some((v.not_before.timestamp(), v.not_after.timestamp()));
        }
    }
    let (not_before, not_after) = validity.unwrap_or((0, 0));
    let fingerprint = tessera_tls::cert_sha256_hex(leaf.as_ref());
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| CertError::BadKey { path: display(key_path), error: pem_error(&e) })?;
    if !ends_complete(key_pem) {
        return Err(CertError::BadKey { path: display(key_path), error: INCOMPLETE.into() });
    }
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| CertError::BadKey { path: display(key_path), error: "unsupported or malformed key".into() })?;
    let certified = CertifiedKey::new(chain, signing);
    // Strict: with aws-lc-rs every key type reports its public key, so an
    // "unknown" answer means something is off and is refused too.
    if certified.keys_match().is_err() {
        return Err(CertError::Mismatch { cert: display(cert_path), key: display(key_path) });
    }
    Ok(LoadedPair { certified: Arc::new(certified), fingerprint, not_before, not_after })
}

fn load_client_ca(pem_bytes: &[u8], path: &Path) -> Result<rustls::RootCertStore, CertError> {
    let bad = |error: String| CertError::BadCa { path: display(path), error };
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(pem_bytes) {
        let ca = ca.map_err(|e| bad(pem_error(&e)))?;
        roots.add(ca).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    if !ends_complete(pem_bytes) {
        return Err(bad(INCOMPLETE.into()));
    }
    Ok(roots)
}

/// Builds a listener's rustls configuration from its files' content.
fn build(
    listener: Listener,
    files: &CertFiles,
    raw: &Raw,
) -> Result<(Arc<rustls::ServerConfig>, LoadedPair), CertError> {
    let pair = load_pair(&raw.cert, &raw.key, &files.cert, &files.key)?;
    let config_err = |e: rustls::Error| CertError::Config {
        cert: display(&files.cert),
        key: display(&files.key),
        error: e.to_string(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(config_err)?;
    let resolver = Arc::new(SingleCertAndKey::from(CertifiedKey::clone(&pair.certified)));
    let cfg = match (listener, files.client_ca.as_deref(), raw.client_ca.as_deref()) {
        (Listener::Radsec, Some(ca_path), Some(ca)) => {
            let roots = load_client_ca(ca, ca_path)?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| CertError::BadCa { path: display(ca_path), error: e.to_string() })?;
            builder.with_client_cert_verifier(verifier).with_cert_resolver(resolver)
        }
        (Listener::Radsec, ..) => {
            return Err(CertError::BadCa { path: String::new(), error: "RadSec needs a client CA file".into() });
        }
        (Listener::Https, ..) => {
            // Client certificates are asked for but optional: browsers and
            // API clients connect as before (the request names only the
            // tessera node issuer, so a browser with certificates of its
            // own is not prompted); other nodes present theirs, and the
            // replication endpoints look it up in the enrolled list
            // (`http/replication.rs`).
            let mut cfg =
                builder.with_client_cert_verifier(tessera_tls::NodeClientVerifier::new()).with_cert_resolver(resolver);
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            cfg
        }
    };
    Ok((Arc::new(cfg), pair))
}

/// What the files were when last looked at.
#[derive(Debug)]
struct Seen {
    /// Digest of the content being served.
    served: u64,
    /// Digest of the content last tried (equal to `served` unless the
    /// last attempt failed).
    tried: u64,
    fingerprint: String,
}

/// What [`CertSource::check`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The files hold what is served (or the failure already reported).
    Unchanged,
    /// New certificate in effect for new connections.
    Reloaded { fingerprint: String },
    /// The files changed but do not form a usable pair; the old one stays.
    Refused(String),
}

/// One listener's reloadable TLS configuration.
#[derive(Debug)]
pub struct CertSource {
    listener: Listener,
    files: CertFiles,
    current: ArcSwap<rustls::ServerConfig>,
    seen: Mutex<Seen>,
}

impl CertSource {
    /// Loads the files at start: any problem is an error (the server does
    /// not start on a certificate it cannot use).
    pub fn open(listener: Listener, files: CertFiles, now: Timestamp) -> Result<Arc<CertSource>, CertError> {
        let raw = Raw::read(&files)?;
        let (cfg, pair) = build(listener, &files, &raw)?;
        let digest = raw.digest();
        tracing::info!(
            listener = listener.label(),
            cert = %files.cert.display(),
            sha256 = %pair.fingerprint,
            not_after = %Timestamp::from_unix_seconds(pair.not_after).to_rfc3339(),
            "TLS certificate loaded"
        );
        warn_validity(listener, &files, &pair, now);
        crate::metrics::tls_certificate(listener, pair.not_after);
        Ok(Arc::new(CertSource {
            listener,
            files,
            current: ArcSwap::new(cfg),
            seen: Mutex::new(Seen { served: digest, tried: digest, fingerprint: pair.fingerprint }),
        }))
    }

    pub fn listener(&self) -> Listener {
        self.listener
    }

    pub fn files(&self) -> &CertFiles {
        &self.files
    }

    /// The configuration for a connection accepted now.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.current.load_full()
    }

    /// SHA-256 of the certificate served to new connections.
    pub fn fingerprint(&self) -> String {
        self.seen.lock().fingerprint.clone()
    }

    /// Reads the files and, if they changed (or on SIGHUP, if they differ
    /// from what is served), loads and swaps them in. Blocking file I/O and
    /// parsing: call from a blocking context. Checks of one source never
    /// overlap (SIGHUP and the poll take turns).
    pub fn check(&self, trigger: Trigger, now: Timestamp) -> CheckOutcome {
        let mut seen = self.seen.lock();
        let raw = Raw::read(&self.files);
        let digest = match &raw {
            Ok(r) => r.digest(),
            // A file that cannot be read is a state of its own: reported
            // once (per SIGHUP), tried again when it changes.
            Err(e) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                e.to_string().hash(&mut h);
                h.finish() ^ 1
            }
        };
        if digest == seen.served {
            if seen.tried != seen.served {
                // Put back to what is served: nothing is pending any more.
                seen.tried = seen.served;
                health::set(self.listener.degradation(), None);
            }
            return CheckOutcome::Unchanged;
        }
        if digest == seen.tried && trigger == Trigger::Poll {
            return CheckOutcome::Unchanged;
        }
        seen.tried = digest;
        let result = raw.and_then(|raw| build(self.listener, &self.files, &raw));
        match result {
            Ok((cfg, pair)) => {
                self.current.store(cfg);
                seen.served = digest;
                seen.fingerprint = pair.fingerprint.clone();
                drop(seen);
                crate::metrics::tls_reload(self.listener, true);
                crate::metrics::tls_certificate(self.listener, pair.not_after);
                health::set(self.listener.degradation(), None);
                tracing::info!(
                    listener = self.listener.label(),
                    trigger = trigger.label(),
                    cert = %self.files.cert.display(),
                    sha256 = %pair.fingerprint,
                    not_after = %Timestamp::from_unix_seconds(pair.not_after).to_rfc3339(),
                    "TLS certificate reloaded: new connections get it, open ones keep theirs"
                );
                warn_validity(self.listener, &self.files, &pair, now);
                CheckOutcome::Reloaded { fingerprint: pair.fingerprint }
            }
            Err(e) => {
                drop(seen);
                crate::metrics::tls_reload(self.listener, false);
                let error = e.to_string();
                tracing::error!(
                    listener = self.listener.label(),
                    trigger = trigger.label(),
                    %error,
                    "TLS certificate files changed but were not applied; the previous certificate is still served \
                     (tried again when the files change, or on SIGHUP)"
                );
                health::set(
                    self.listener.degradation(),
                    Some(format!(
                        "{} certificate: the files on disk were not applied ({error}); the previous certificate is \
                         still served",
                        self.listener.label()
                    )),
                );
                CheckOutcome::Refused(error)
            }
        }
    }
}

fn warn_validity(listener: Listener, files: &CertFiles, pair: &LoadedPair, now: Timestamp) {
    if !pair.valid_at(now.unix_seconds()) {
        tracing::warn!(
            listener = listener.label(),
            cert = %files.cert.display(),
            not_before = %Timestamp::from_unix_seconds(pair.not_before).to_rfc3339(),
            not_after = %Timestamp::from_unix_seconds(pair.not_after).to_rfc3339(),
            "the TLS certificate is not valid now (expired or not yet valid); clients will refuse it"
        );
    }
}

/// Checks every source (SIGHUP, or one poll) off the async threads.
pub async fn check_all(sources: &[Arc<CertSource>], trigger: Trigger, clock: &Arc<dyn Clock>) {
    for s in sources {
        let s = s.clone();
        let now = clock.now();
        if let Err(e) = tokio::task::spawn_blocking(move || s.check(trigger, now)).await {
            tracing::warn!(error = %e, "TLS certificate check did not finish");
        }
    }
}

/// Polls the sources' files every `every` until `stop` flips (returns at
/// once when `every` is zero: SIGHUP only).
pub async fn watch(
    sources: Vec<Arc<CertSource>>,
    every: Duration,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    if every.is_zero() || sources.is_empty() {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        check_all(&sources, Trigger::Poll, &clock).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pki {
        ca: rcgen::Issuer<'static, rcgen::KeyPair>,
        ca_pem: String,
    }

    fn pki(name: &str) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let ca_pem = p.self_signed(&key).unwrap().pem();
        Pki { ca: rcgen::Issuer::new(p, key), ca_pem }
    }

    fn leaf(pki: &Pki) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = p.signed_by(&key, &pki.ca).unwrap();
        (format!("{}{}", cert.pem(), pki.ca_pem), key.serialize_pem())
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        // Through a rename, as an administrator should.
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        p
    }

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    #[test]
    fn a_good_pair_is_accepted_with_its_fingerprint_and_dates() {
        let (cert, key) = leaf(&pki("A"));
        let pair = load_pair(cert.as_bytes(), key.as_bytes(), Path::new("c.pem"), Path::new("k.pem")).unwrap();
        let der = CertificateDer::pem_slice_iter(cert.as_bytes()).next().unwrap().unwrap();
        assert_eq!(pair.fingerprint, tessera_tls::cert_sha256_hex(der.as_ref()));
        assert_eq!(pair.certified.cert.len(), 2, "the chain is kept");
        assert!(pair.not_after > pair.not_before);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_both_files() {
        let a = pki("A");
        let (cert, _) = leaf(&a);
        let (_, other_key) = leaf(&a);
        let e = load_pair(cert.as_bytes(), other_key.as_bytes(), Path::new("/etc/c.pem"), Path::new("/etc/k.pem"))
            .unwrap_err();
        assert!(matches!(e, CertError::Mismatch { .. }), "{e:?}");
        let shown = e.to_string();
        assert!(shown.contains("/etc/c.pem") && shown.contains("/etc/k.pem"), "{shown}");
    }

    #[test]
    fn garbage_and_truncated_files_are_refused_without_showing_their_content() {
        let (cert, key) = leaf(&pki("A"));
        let c = Path::new("c.pem");
        let k = Path::new("k.pem");
        for (cert_text, key_text, what) in [
            ("", key.as_str(), "empty certificate"),
            ("not a certificate at all", key.as_str(), "text"),
            (&cert[..cert.len() / 2], key.as_str(), "half a certificate"),
            (&cert[..cert.len() - 40], key.as_str(), "a chain cut in its last certificate"),
            (&cert[..cert.rfind("-----BEGIN").unwrap() + 8], key.as_str(), "a chain cut in a BEGIN line"),
            ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", key.as_str(), "not DER"),
            (cert.as_str(), "", "empty key"),
            (cert.as_str(), &key[..key.len() / 2], "half a key"),
            (cert.as_str(), cert.as_str(), "a certificate as the key"),
        ] {
            let e = load_pair(cert_text.as_bytes(), key_text.as_bytes(), c, k).unwrap_err();
            let shown = e.to_string();
            // No base64 line of the key appears in the message.
            for line in key.lines().filter(|l| !l.starts_with("-----") && l.len() > 8) {
                assert!(!shown.contains(line), "{what}: key material in {shown}");
            }
            assert!(shown.contains("c.pem") || shown.contains("k.pem"), "{what}: {shown}");
        }
    }

    #[test]
    fn an_expired_certificate_is_loaded_and_reported_invalid() {
        let a = pki("A");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
        let cert = p.signed_by(&key, &a.ca).unwrap();
        let pair =
            load_pair(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), Path::new("c"), Path::new("k")).unwrap();
        assert!(!pair.valid_at(NOW.unix_seconds()));
        assert!(pair.valid_at(pair.not_before + 1));
    }

    #[test]
    fn a_source_swaps_only_complete_pairs_and_retries_on_the_next_change() {
        let dir = tempfile::tempdir().unwrap();
        let a = pki("A");
        let (cert1, key1) = leaf(&a);
        let files = CertFiles {
            cert: write(dir.path(), "cert.pem", &cert1),
            key: write(dir.path(), "key.pem", &key1),
            client_ca: None,
        };
        let src = CertSource::open(Listener::Https, files.clone(), NOW).unwrap();
        let first = src.fingerprint();
        let cfg1 = src.config();
        assert_eq!(src.check(Trigger::Poll, NOW), CheckOutcome::Unchanged);

        // The certificate copied, the key not yet: refused, the old one stays.
        let (cert2, key2) = leaf(&a);
        write(dir.path(), "cert.pem", &cert2);
        assert!(matches!(src.check(Trigger::Poll, NOW), CheckOutcome::Refused(e) if e.contains("cert.pem")));
        assert_eq!(src.fingerprint(), first);
        assert!(Arc::ptr_eq(&src.config(), &cfg1), "the served configuration is untouched");
        assert!(health::is_set(Degradation::HttpsCertificate));
        // Reported once: the same content is not tried again by the poll…
        assert_eq!(src.check(Trigger::Poll, NOW), CheckOutcome::Unchanged);
        // …but SIGHUP tries again.
        assert!(matches!(src.check(Trigger::Signal, NOW), CheckOutcome::Refused(_)));

        // The key follows: applied.
        write(dir.path(), "key.pem", &key2);
        let CheckOutcome::Reloaded { fingerprint } = src.check(Trigger::Poll, NOW) else { panic!("not reloaded") };
        assert_ne!(fingerprint, first);
        assert_eq!(src.fingerprint(), fingerprint);
        assert!(!Arc::ptr_eq(&src.config(), &cfg1));
        assert!(!health::is_set(Degradation::HttpsCertificate));
        assert_eq!(src.check(Trigger::Signal, NOW), CheckOutcome::Unchanged);

        // A file that disappears is refused, and clears once put back.
        std::fs::rename(&files.key, dir.path().join("key.moved")).unwrap();
        assert!(matches!(src.check(Trigger::Poll, NOW), CheckOutcome::Refused(e) if e.contains("key.pem")));
        std::fs::rename(dir.path().join("key.moved"), &files.key).unwrap();
        assert_eq!(src.check(Trigger::Poll, NOW), CheckOutcome::Unchanged);
        assert!(!health::is_set(Degradation::HttpsCertificate));
    }

    #[test]
    fn radsec_reloads_its_client_ca_and_refuses_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let a = pki("A");
        let b = pki("B");
        let (cert, key) = leaf(&a);
        let files = CertFiles {
            cert: write(dir.path(), "cert.pem", &cert),
            key: write(dir.path(), "key.pem", &key),
            client_ca: Some(write(dir.path(), "ca.pem", &a.ca_pem)),
        };
        let src = CertSource::open(Listener::Radsec, files.clone(), NOW).unwrap();
        let before = src.config();
        write(dir.path(), "ca.pem", "garbage");
        assert!(matches!(src.check(Trigger::Poll, NOW), CheckOutcome::Refused(e) if e.contains("ca.pem")));
        assert!(Arc::ptr_eq(&src.config(), &before));
        write(dir.path(), "ca.pem", &format!("{}{}", a.ca_pem, b.ca_pem));
        assert!(matches!(src.check(Trigger::Poll, NOW), CheckOutcome::Reloaded { .. }));
        assert!(!Arc::ptr_eq(&src.config(), &before));
        assert!(!health::is_set(Degradation::RadsecCertificate));
    }

    #[test]
    fn opening_refuses_what_a_reload_would() {
        let dir = tempfile::tempdir().unwrap();
        let a = pki("A");
        let (cert, _) = leaf(&a);
        let (_, key) = leaf(&a);
        let files = CertFiles {
            cert: write(dir.path(), "cert.pem", &cert),
            key: write(dir.path(), "key.pem", &key),
            client_ca: None,
        };
        assert!(matches!(CertSource::open(Listener::Https, files, NOW), Err(CertError::Mismatch { .. })));
    }
}
