//! Realms end to end: `tessera realm add` from a TOML file with an LDAP
//! source (a private slapd), `realm test`, then `radclient` logging in with
//! the LDAP password and the code, the reply carrying an attribute for the
//! user's directory group.

use tessera_ldap::testing::{Slapd, fixtures};

use super::support::{TestNode, radclient_pap, require_tool, totp_now};

const SECRET: &str = "radius-test-secret";

fn radclient_auth(addr: &str, user: &str, password: &str) -> String {
    radclient_pap(addr, SECRET, user, password, "", 3).output
}

fn slapd() -> Option<&'static Slapd> {
    let s = Slapd::shared();
    if s.is_none() {
        assert!(std::env::var_os("TESSERA_REQUIRE_TOOLS").is_none(), "slapd is required (TESSERA_REQUIRE_TOOLS=1)");
        eprintln!("skipped: Debian slapd is not installed");
    }
    s
}

#[tokio::test]
async fn radius_login_with_ldap_password_and_group_reply_attribute() {
    if !require_tool("radclient") {
        return;
    }
    let Some(ldap) = slapd() else { return };
    let mut n = TestNode::new();
    n.ok(&["init"]);
    let pw_file = n.cwd().join("svc.pw");
    std::fs::write(&pw_file, format!("{}\n", fixtures::SERVICE_PASSWORD)).unwrap();
    let realm_file = n.cwd().join("corp.toml");
    std::fs::write(
        &realm_file,
        format!(
            r#"
cache_ttl_seconds = 60

[[source]]
type = "ldap"
urls = ["{dead}", "{ldaps}"]
ca_file = "{ca}"
bind_dn = "{svc}"
bind_password_file = "{pw}"
base_dn = "{base}"
filter = "{filter}"
group_mode = "search"
group_base_dn = "{groups}"
group_filter = "(member={{dn}})"
connect_timeout_ms = 1000
"#,
            dead = "ldap://127.0.0.1:9",
            ldaps = ldap.ldaps_url,
            ca = ldap.ca_pem_path.display(),
            svc = fixtures::SERVICE_DN,
            pw = pw_file.display(),
            base = fixtures::BASE_DN,
            filter = fixtures::USER_FILTER,
            groups = fixtures::GROUPS_DN,
        ),
    )
    .unwrap();
    let out = n.ok(&["realm", "add", "corp", "--file", realm_file.to_str().unwrap()]);
    assert!(out.contains("realm corp saved"), "{out}");
    // the secret is sealed, not shown
    let shown = n.ok(&["realm", "show", "corp"]);
    assert!(!shown.contains(fixtures::SERVICE_PASSWORD), "{shown}");
    assert!(shown.contains("source.0.bind_password"), "{shown}");
    // realm test: the first URL is dead, the second works; with a user and password
    let tested =
        n.ok_stdin(&["realm", "test", "corp", "--user", fixtures::ALICE], &format!("{}\n", fixtures::ALICE_PASSWORD));
    assert!(tested.contains("password accepted by ldap:corp/ldap#1"), "{tested}");
    assert!(tested.contains(fixtures::VPN_ADMINS), "{tested}");

    let secret_file = n.cwd().join("radius.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    n.ok(&[
        "client",
        "add",
        "vpn",
        "--address",
        "127.0.0.1",
        "--secret-file",
        secret_file.to_str().unwrap(),
        "--default-realm",
        "corp",
    ]);
    n.ok(&["user", "add", fixtures::ALICE, "--realm", "corp"]);
    let otp = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    n.ok(&["token", "add", fixtures::ALICE, "--realm", "corp", "--secret", otp]);
    n.ok(&["reply", "add", "--group", fixtures::VPN_ADMINS, "Fortinet-Group-Name=vpn-admins", "Class=corp-admins"]);
    n.start();
    let addr = n.listening("radius");

    // the client's default realm is corp: a bare name works
    let out = radclient_auth(&addr, fixtures::ALICE, &format!("{}{}", fixtures::ALICE_PASSWORD, totp_now(otp, 0)));
    assert!(out.contains("Received Access-Accept"), "{out}");
    assert!(out.contains("vpn-admins"), "group-based reply attribute: {out}");
    // Class is octets: radclient prints it in hex ("corp-admins")
    assert!(out.contains("Class = 0x636f72702d61646d696e73"), "{out}");
    // wrong LDAP password with a fresh code
    let out = radclient_auth(&addr, fixtures::ALICE, &format!("wrong-pw{}", totp_now(otp, 1)));
    assert!(out.contains("Received Access-Reject"), "{out}");
    let audit = n.ok(&["audit", "list", "--action", "validate", "--limit", "2"]);
    assert!(audit.contains("ldap_wrong_password"), "{audit}");
    assert!(audit.contains("via ldap:corp/ldap#1"), "{audit}");
    // flush the cache from the CLI while the server runs
    let out = n.ok(&["realm", "flush-cache"]);
    assert!(out.contains("flushed"), "{out}");
    n.stop();
}
