//! A private OpenLDAP `slapd` for tests (feature `test-support`): Debian's
//! `slapd` started in a temp dir on free loopback ports, plain (`ldap://`,
//! also for StartTLS) and `ldaps://`, with a test CA, fixture users and
//! groups ([`fixtures`]). Never for production builds.
//!
//! [`Slapd::start`] starts one that is stopped when the handle drops.
//! [`Slapd::shared`] starts one per test process: statics are never dropped,
//! so slapd runs under a small `sh` watchdog that kills it (and removes the
//! temp dir) as soon as the test process's end of a pipe closes, which the
//! kernel does however the process ends (even on SIGKILL).
//!
//! Runs as root (CI) or as any user: slapd keeps the invoking identity.
//! slapd is started with `-d 256` (stats) and its log is kept in
//! [`Slapd::log_path`], so a test can show which binds reached the server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use data_encoding::BASE64;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tessera_tls::cert_sha256_hex;
use zeroize::Zeroizing;

use crate::{BindMode, GroupMode, LdapConfig, escape_dn_value};

/// The directory's contents. Every user's password is `<uid>-Pa55` except
/// where noted.
pub mod fixtures {
    pub const BASE_DN: &str = "dc=example,dc=org";
    pub const PEOPLE_DN: &str = "ou=people,dc=example,dc=org";
    pub const CONTRACTORS_DN: &str = "ou=contractors,dc=example,dc=org";
    pub const GROUPS_DN: &str = "ou=groups,dc=example,dc=org";
    /// slapd's rootdn (writes, and the harness's own checks).
    pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
    pub const ADMIN_PASSWORD: &str = "admin-Pa55";
    /// The service account for search-then-bind.
    pub const SERVICE_DN: &str = "cn=tessera-svc,ou=services,dc=example,dc=org";
    pub const SERVICE_PASSWORD: &str = "svc-Pa55";

    /// In `vpn-admins` and `staff` (groupOfNames, also as `memberOf`) and
    /// `developers` (posixGroup, `memberUid`).
    pub const ALICE: &str = "alice";
    pub const ALICE_PASSWORD: &str = "alice-Pa55";
    pub const ALICE_DISPLAY_NAME: &str = "Alice Liddell";
    pub const ALICE_MAIL: &str = "alice@example.org";
    pub const ALICE_MOBILE: &str = "+15550100";
    /// In `staff`.
    pub const BOB: &str = "bob";
    pub const BOB_PASSWORD: &str = "bob-Pa55";
    /// Reserved for the empty-password test (no other test binds as carol,
    /// so the slapd log shows whether anything did).
    pub const CAROL: &str = "carol";
    pub const CAROL_PASSWORD: &str = "carol-Pa55";
    /// A uid with every character that needs escaping in a DN or a filter
    /// (and a leading `#`). In `vpn-admins`.
    pub const SPECIAL: &str = "#o'Brien, Jr. (*)+\\<ü>;=\"x";
    pub const SPECIAL_PASSWORD: &str = "special-Pa55";
    /// Two entries (people and contractors) share this uid.
    pub const TWIN: &str = "twin";
    pub const TWIN_PASSWORD: &str = "twin-Pa55";

    pub const VPN_ADMINS: &str = "vpn-admins";
    pub const STAFF: &str = "staff";
    pub const DEVELOPERS: &str = "developers";

    /// Search filter for users.
    pub const USER_FILTER: &str = "(&(objectClass=inetOrgPerson)(uid={user}))";
    /// Bind template for people.
    pub const BIND_TEMPLATE: &str = "uid={user},ou=people,dc=example,dc=org";

    /// The DN of a person under `ou=people`.
    pub fn user_dn(uid: &str) -> String {
        format!("uid={},{PEOPLE_DN}", crate::escape_dn_value(uid))
    }
}

use fixtures::*;

/// A running private slapd.
pub struct Slapd {
    /// `ldap://127.0.0.1:<port>` (plain; StartTLS works on it).
    pub ldap_url: String,
    /// `ldaps://127.0.0.1:<port>`.
    pub ldaps_url: String,
    pub base_dn: String,
    /// The PEM of the CA that signed the server certificate.
    pub ca_pem_path: PathBuf,
    /// The PEM of a CA that did *not* sign it (for fail-closed tests).
    pub other_ca_pem_path: PathBuf,
    /// Colon-separated hex SHA-256 of the server certificate's DER.
    pub server_cert_sha256: String,
    /// slapd's stats log (`-d 256`).
    pub log_path: PathBuf,
    dir: PathBuf,
    watchdog: Option<Child>,
    /// Closing this makes the watchdog stop slapd.
    lifeline: Option<ChildStdin>,
}

impl std::fmt::Debug for Slapd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slapd").field("ldap_url", &self.ldap_url).field("ldaps_url", &self.ldaps_url).finish()
    }
}

/// Stops slapd when the watchdog's stdin closes, then removes the temp dir.
/// `$1` dir, `$2` log, the rest is the slapd command line.
const WATCHDOG: &str = r#"
dir="$1"; log="$2"; shift 2
exec 3<&0
"$@" 2>>"$log" </dev/null &
pid=$!
( read -r _ <&3; kill -TERM "$pid" 2>/dev/null ) &
reader=$!
exec 3<&-
wait "$pid"; rc=$?
kill "$reader" 2>/dev/null
rm -rf "$dir"
exit "$rc"
"#;

impl Slapd {
    /// Starts a slapd; `ErrorKind::NotFound` when Debian's `slapd` is not
    /// installed.
    pub fn start() -> io::Result<Slapd> {
        Self::start_with("")
    }

    /// [`Slapd::start`] with extra lines for the global section of
    /// slapd.conf (for example `idletimeout 1`).
    pub fn start_with(extra_global_conf: &str) -> io::Result<Slapd> {
        let slapd = find_tool("slapd")?;
        let slapadd = find_tool("slapadd")?;
        let mut last_err = None;
        // A free port found by binding port 0 can be taken by someone else
        // before slapd binds it; a few tries make that harmless.
        for _ in 0..4 {
            match Self::start_once(&slapd, &slapadd, extra_global_conf) {
                Ok(s) => return Ok(s),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("slapd did not start")))
    }

    /// [`Slapd::start`], or `None` with a printed message when slapd is not
    /// installed. With `TESSERA_REQUIRE_TOOLS=1` a missing slapd panics
    /// (fails the test) instead.
    pub fn start_or_skip() -> Option<Slapd> {
        Self::or_skip(Self::start())
    }

    /// The skip-or-fail policy of [`Slapd::start_or_skip`] for any start
    /// result (e.g. of [`Slapd::start_with`]).
    pub fn or_skip(started: io::Result<Slapd>) -> Option<Slapd> {
        match started {
            Ok(s) => Some(s),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                assert!(
                    std::env::var("TESSERA_REQUIRE_TOOLS").as_deref() != Ok("1"),
                    "slapd is required (TESSERA_REQUIRE_TOOLS=1): {e}"
                );
                // Straight to fd 2: the test harness captures eprintln!.
                let _ = writeln!(io::stderr(), "skipping LDAP tests: {e}");
                None
            }
            Err(e) => panic!("starting slapd: {e}"),
        }
    }

    /// One slapd for the whole test process (started on first use), or
    /// `None` when slapd is not installed (see [`Slapd::start_or_skip`]).
    pub fn shared() -> Option<&'static Slapd> {
        static SHARED: OnceLock<Option<Slapd>> = OnceLock::new();
        SHARED.get_or_init(Self::start_or_skip).as_ref()
    }

    fn start_once(slapd: &Path, slapadd: &Path, extra: &str) -> io::Result<Slapd> {
        let dir = tempfile::Builder::new().prefix("tessera-slapd-").tempdir()?.keep();
        match Self::prepare_and_run(&dir, slapd, slapadd, extra) {
            Ok(s) => Ok(s),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    fn prepare_and_run(dir: &Path, slapd: &Path, slapadd: &Path, extra: &str) -> io::Result<Slapd> {
        let certs = write_certificates(dir)?;
        let db = dir.join("db");
        std::fs::create_dir(&db)?;
        let conf = dir.join("slapd.conf");
        std::fs::write(&conf, slapd_conf(dir, &db, extra))?;
        let ldif = dir.join("data.ldif");
        std::fs::write(&ldif, fixture_ldif())?;
        let out = Command::new(slapadd).arg("-q").arg("-f").arg(&conf).arg("-l").arg(&ldif).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "slapadd failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let (plain, tls) = free_ports()?;
        let log = dir.join("slapd.log");
        let urls = format!("ldap://127.0.0.1:{plain}/ ldaps://127.0.0.1:{tls}/");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(dir)
            .arg(&log)
            .arg(slapd)
            .arg("-f")
            .arg(&conf)
            .arg("-h")
            .arg(&urls)
            .arg("-d")
            .arg("256")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let lifeline = child.stdin.take();
        let mut s = Slapd {
            ldap_url: format!("ldap://127.0.0.1:{plain}"),
            ldaps_url: format!("ldaps://127.0.0.1:{tls}"),
            base_dn: BASE_DN.to_string(),
            ca_pem_path: certs.ca,
            other_ca_pem_path: certs.other_ca,
            server_cert_sha256: certs.server_sha256,
            log_path: log,
            dir: dir.to_path_buf(),
            watchdog: Some(child),
            lifeline,
        };
        s.wait_ready(&[plain, tls])?;
        Ok(s)
    }

    fn wait_ready(&mut self, ports: &[u16]) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(child) = self.watchdog.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!("slapd exited ({status}): {}", self.log())));
            }
            let up = ports
                .iter()
                .all(|p| TcpStream::connect_timeout(&([127, 0, 0, 1], *p).into(), Duration::from_millis(100)).is_ok());
            if up {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!("slapd did not listen within 15 s: {}", self.log())));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// slapd's log so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Search-then-bind against `url` with the service account and the
    /// fixture user filter; no groups.
    pub fn search_config(&self, url: &str) -> LdapConfig {
        let mut cfg = LdapConfig::new(
            vec![url.to_string()],
            BindMode::Search {
                bind_dn: SERVICE_DN.to_string(),
                bind_password: Zeroizing::new(SERVICE_PASSWORD.to_string()),
                base_dn: BASE_DN.to_string(),
                filter: USER_FILTER.to_string(),
                scope_subtree: true,
            },
        );
        cfg.ca_file = Some(self.ca_pem_path.clone());
        cfg
    }

    /// Bind-as-user against `url` with the people DN template; no groups.
    pub fn template_config(&self, url: &str) -> LdapConfig {
        let mut cfg =
            LdapConfig::new(vec![url.to_string()], BindMode::Template { template: BIND_TEMPLATE.to_string() });
        cfg.ca_file = Some(self.ca_pem_path.clone());
        cfg
    }

    /// `GroupMode::Search` over the groupOfNames groups (`(member={dn})`).
    pub fn group_search() -> GroupMode {
        GroupMode::Search {
            base_dn: GROUPS_DN.to_string(),
            filter: "(&(objectClass=groupOfNames)(member={dn}))".to_string(),
            name_attribute: "cn".to_string(),
        }
    }

    /// The temp dir holding the configuration, certificates and database.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        drop(self.lifeline.take());
        if let Some(mut child) = self.watchdog.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // slapd ignored SIGTERM: kill it by its pid file, then the watchdog.
            if let Ok(pid) = std::fs::read_to_string(self.dir.join("slapd.pid")) {
                let _ = Command::new("kill").arg("-KILL").arg(pid.trim()).status();
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Finds `slapd`/`slapadd` on PATH or in the sbin directories (non-root
/// PATHs usually lack them). `TESSERA_SLAPD_SBIN=<dir>` looks only there.
fn find_tool(name: &str) -> io::Result<PathBuf> {
    let dirs: Vec<PathBuf> = match std::env::var_os("TESSERA_SLAPD_SBIN") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path).chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from)).collect()
        }
    };
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{name} is not installed (apt-get install --no-install-recommends slapd)"),
    ))
}

/// Two distinct free loopback ports (both held until both are chosen).
fn free_ports() -> io::Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

struct Certs {
    ca: PathBuf,
    other_ca: PathBuf,
    server_sha256: String,
}

fn write_certificates(dir: &Path) -> io::Result<Certs> {
    let err = |e: rcgen::Error| io::Error::other(format!("rcgen: {e}"));
    let ca = new_ca("tessera test CA").map_err(err)?;
    let other = new_ca("tessera unrelated CA").map_err(err)?;
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).map_err(err)?;
    params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca).map_err(err)?;
    let certs = Certs {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        server_sha256: cert_sha256_hex(cert.der()),
    };
    std::fs::write(&certs.ca, ca.pem())?;
    std::fs::write(&certs.other_ca, other.pem())?;
    std::fs::write(dir.join("server.pem"), cert.pem())?;
    std::fs::write(dir.join("server.key"), key.serialize_pem())?;
    Ok(certs)
}

fn new_ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(params, KeyPair::generate()?)
}

fn slapd_conf(dir: &Path, db: &Path, extra: &str) -> String {
    let d = dir.display();
    format!(
        r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
TLSCertificateFile {d}/server.pem
TLSCertificateKeyFile {d}/server.key
# Accept *unauthenticated* binds (a DN with an empty password) as anonymous
# success, as some servers do: the empty-password test proves the client
# never sends one.
allow bind_anon_dn
{extra}

database mdb
suffix "{BASE_DN}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {db}
maxsize 33554432
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
access to attrs=userPassword by self =xw by anonymous auth by * none
access to * by users read by * none
"#,
        db = db.display()
    )
}

/// One LDIF attribute line, base64 so any value is safe.
fn line(out: &mut String, attr: &str, value: &str) {
    out.push_str(&format!("{attr}:: {}\n", BASE64.encode(value.as_bytes())));
}

fn person(out: &mut String, ou_dn: &str, uid: &str, cn: &str, extra: &[(&str, &str)]) {
    line(out, "dn", &format!("uid={},{ou_dn}", escape_dn_value(uid)));
    line(out, "objectClass", "inetOrgPerson");
    line(out, "uid", uid);
    line(out, "cn", cn);
    line(out, "sn", cn.rsplit(' ').next().unwrap_or(cn));
    line(out, "userPassword", &format!("{}-Pa55", if uid == SPECIAL { "special" } else { uid }));
    for (k, v) in extra {
        line(out, k, v);
    }
    out.push('\n');
}

fn fixture_ldif() -> String {
    let mut o = String::new();
    for (dn, classes, attrs) in [
        (BASE_DN, &["dcObject", "organization"][..], &[("dc", "example"), ("o", "Example")][..]),
        (PEOPLE_DN, &["organizationalUnit"], &[("ou", "people")]),
        (CONTRACTORS_DN, &["organizationalUnit"], &[("ou", "contractors")]),
        (GROUPS_DN, &["organizationalUnit"], &[("ou", "groups")]),
        ("ou=services,dc=example,dc=org", &["organizationalUnit"], &[("ou", "services")]),
        (SERVICE_DN, &["organizationalRole", "simpleSecurityObject"], &[("cn", "tessera-svc")]),
    ] {
        line(&mut o, "dn", dn);
        for c in classes {
            line(&mut o, "objectClass", c);
        }
        for (k, v) in attrs {
            line(&mut o, k, v);
        }
        if dn == SERVICE_DN {
            line(&mut o, "userPassword", SERVICE_PASSWORD);
        }
        o.push('\n');
    }
    let group_dn = |cn: &str| format!("cn={cn},{GROUPS_DN}");
    // memberOf is what the memberof overlay would maintain; slapadd bypasses
    // overlays, so the fixture states it.
    let (vpn, staff) = (group_dn(VPN_ADMINS), group_dn(STAFF));
    person(
        &mut o,
        PEOPLE_DN,
        ALICE,
        "Alice Liddell",
        &[
            ("displayName", ALICE_DISPLAY_NAME),
            ("mail", ALICE_MAIL),
            ("mobile", ALICE_MOBILE),
            ("memberOf", &vpn),
            ("memberOf", &staff),
        ],
    );
    person(&mut o, PEOPLE_DN, BOB, "Bob Builder", &[("mail", "bob@example.org"), ("memberOf", &staff)]);
    person(&mut o, PEOPLE_DN, CAROL, "Carol Danvers", &[]);
    person(&mut o, PEOPLE_DN, SPECIAL, "Special Case", &[("memberOf", &vpn)]);
    person(&mut o, PEOPLE_DN, TWIN, "Twin One", &[]);
    person(&mut o, CONTRACTORS_DN, TWIN, "Twin Two", &[]);
    for (cn, members) in
        [(VPN_ADMINS, vec![user_dn(ALICE), user_dn(SPECIAL)]), (STAFF, vec![user_dn(ALICE), user_dn(BOB)])]
    {
        line(&mut o, "dn", &group_dn(cn));
        line(&mut o, "objectClass", "groupOfNames");
        line(&mut o, "cn", cn);
        for m in members {
            line(&mut o, "member", &m);
        }
        o.push('\n');
    }
    line(&mut o, "dn", &group_dn(DEVELOPERS));
    line(&mut o, "objectClass", "posixGroup");
    line(&mut o, "cn", DEVELOPERS);
    line(&mut o, "gidNumber", "5000");
    line(&mut o, "memberUid", ALICE);
    o.push('\n');
    o
}
