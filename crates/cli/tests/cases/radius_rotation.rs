//! Issue 19: RADIUS secret rotation with overlap (`client set-secret
//! --keep-old-for`) and `client edit`, through the binary and `radclient`.

use std::time::{Duration, Instant};

use super::support::{TestNode, cluster, hotp_code, radclient, radclient_pap, require_tool};

const OLD: &str = "old-shared-secret-A";
const NEW: &str = "new-shared-secret-B";
const THIRD: &str = "attacker-secret-C";
const SEED: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

fn write(n: &TestNode, file: &str, text: &str) -> String {
    let p = n.cwd().join(file);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn show(n: &TestNode) -> serde_json::Value {
    serde_json::from_str(&n.ok(&["client", "show", "loopback", "--json"])).unwrap()
}

fn failures(n: &TestNode, user: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&n.ok(&["user", "show", user, "--json"])).unwrap();
    v["user"]["failures"].as_u64().unwrap()
}

/// Retries `check` until it holds (the server re-reads clients every 2 s).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not within 10 s");
}

/// Whether the server answers a request made with `secret` (and signs the
/// answer with it: radclient discards a reply that does not verify). No
/// password, so it is rejected without counting anything.
fn probe(addr: &str, secret: &str, signed: bool) -> bool {
    let ma = if signed { ", Message-Authenticator = 0x00" } else { "" };
    radclient(addr, "auth", secret, &format!("User-Name = \"hal\"{ma}\n"), 1).code.is_some()
}

/// A node with client `loopback` (secret OLD, mode `mode`) and user hal
/// with an HOTP token (each accepted login uses the next counter).
fn node(mode: &str) -> TestNode {
    let n = TestNode::new();
    n.ok(&["init"]);
    let f = write(&n, "old.secret", &format!("{OLD}\n"));
    n.ok(&[
        "client",
        "add",
        "loopback",
        "--address",
        "127.0.0.1",
        "--secret-file",
        &f,
        "--message-authenticator",
        mode,
    ]);
    n.ok(&["user", "add", "hal"]);
    n.ok(&["token", "add", "hal", "--secret", SEED, "--type", "hotp"]);
    n
}

/// The acceptance: during the overlap both secrets are answered (each
/// with the secret it used: radclient checks the reply's authenticator),
/// a third one never; after it the old one is refused at once, the new
/// one still answered; no request with a valid secret goes unanswered.
#[tokio::test]
async fn rotation_with_overlap_accepts_both_then_only_the_new_secret() {
    if !require_tool("radclient") {
        return;
    }
    let mut n = node("require");
    n.start();
    let addr = n.listening("radius");
    let counter = std::cell::Cell::new(0u64);
    let login = |secret: &str| {
        let r = radclient_pap(&addr, secret, "hal", &hotp_code(SEED, counter.get()), "", 2);
        if r.code.as_deref() == Some("Access-Accept") {
            counter.set(counter.get() + 1);
        }
        r
    };
    let r = login(OLD);
    assert_eq!(r.code.as_deref(), Some("Access-Accept"), "before the change: {}", r.output);

    let f = write(&n, "new.secret", &format!("{NEW}\n"));
    let out = n.ok(&["client", "set-secret", "loopback", "--secret-file", &f, "--keep-old-for", "15s"]);
    assert!(out.contains("accepted too until"), "{out}");
    assert!(!out.contains(OLD) && !out.contains(NEW), "no secret in the output: {out}");
    let v = show(&n);
    assert_eq!(v["secret_change"]["old_secret"], "accepted", "{v}");
    let until = v["secret_change"]["old_secret_until"].as_str().unwrap().to_string();
    // The change is running 15 s from now; the server sees it within 2 s.
    let changed = Instant::now();
    let overlap_ends = changed + Duration::from_secs(15);
    eventually("the server takes the new secret", || probe(&addr, NEW, true));

    // During the overlap: both secrets answered, alternately, every time.
    let mut answered = 0;
    for round in 0..3 {
        for secret in [OLD, NEW] {
            assert!(Instant::now() + Duration::from_secs(2) < overlap_ends, "this machine is too slow for the test");
            let r = login(secret);
            assert_eq!(r.code.as_deref(), Some("Access-Accept"), "round {round}, {secret}: {}", r.output);
            answered += 1;
        }
    }
    assert_eq!(answered, 6, "no request dropped");
    // The attacker's third secret: no answer.
    let r = radclient_pap(&addr, THIRD, "hal", &hotp_code(SEED, counter.get()), "", 1);
    assert_eq!(r.code, None, "a third secret: {}", r.output);

    // `client show` tells the client uses both; the audit log says when
    // the old one was first seen (recorded in the background: eventually).
    eventually("the old secret's use recorded", || {
        let s = &show(&n)["secret_change"];
        s["old_secret_last_used_at"].is_string() && s["new_secret_first_used_at"].is_string()
    });
    let text = n.ok(&["client", "show", "loopback"]);
    assert!(text.contains("uses both secrets"), "{text}");
    assert!(text.contains(&format!("accepted until {until}")), "{text}");
    let list = n.ok(&["client", "list"]);
    assert!(list.contains("old also until"), "{list}");
    let used = cluster::audit(&n, "radius_client.old_secret_used");
    assert_eq!(used.len(), 1, "once, however often used: {used:?}");
    assert_eq!(cluster::audit(&n, "radius_client.set_secret").len(), 1);
    let all = n.ok(&["audit", "list", "--json", "--limit", "1000"]);
    assert!(!all.contains(OLD) && !all.contains(NEW), "no secret in the audit log");

    // After the overlap: the old secret is refused from its exact expiry
    // on (before any reload removes it), the new one answered.
    let wait = overlap_ends.saturating_duration_since(Instant::now()) + Duration::from_millis(300);
    std::thread::sleep(wait);
    let r = login(OLD);
    assert_eq!(r.code, None, "the old secret after the overlap: {}", r.output);
    let r = login(NEW);
    assert_eq!(r.code.as_deref(), Some("Access-Accept"), "the new secret after the overlap: {}", r.output);
    eventually("the expired old secret removed and audited", || {
        cluster::audit(&n, "radius_client.old_secret_expired").len() == 1
    });
    let v = show(&n);
    assert_eq!(v["secret_change"]["old_secret"], "expired", "{v}");
    let r = login(OLD);
    assert_eq!(r.code, None, "still refused after removal: {}", r.output);
    assert_eq!(failures(&n, "hal"), 0, "no refused request was counted against the user");
    n.stop();
}

/// Bad input changes nothing; `client edit` changes only what it is given
/// (the secret stays); a change without overlap refuses the old secret at once.
#[tokio::test]
async fn set_secret_refusals_edit_and_no_overlap() {
    if !require_tool("radclient") {
        return;
    }
    let mut n = node("require");
    let new = write(&n, "new.secret", &format!("{NEW}\n"));
    let same = write(&n, "same.secret", &format!("{OLD}\n"));
    let short = write(&n, "short.secret", "short\n");
    let empty = write(&n, "empty.secret", "");
    let before = n.ok(&["client", "show", "loopback", "--json"]);
    let refusals: [(&[&str], &str); 7] = [
        (&["client", "set-secret", "nosuch", "--secret-file", &new], "not found"),
        (&["client", "set-secret", "loopback", "--secret-file", &new, "--keep-old-for", "31d"], "up to 30d"),
        (&["client", "set-secret", "loopback", "--secret-file", &new, "--keep-old-for", "soon"], "--keep-old-for"),
        (&["client", "set-secret", "loopback", "--secret-file", &new, "--keep-old-for=-5m"], "--keep-old-for"),
        (&["client", "set-secret", "loopback", "--secret-file", &same], "current secret"),
        (&["client", "set-secret", "loopback", "--secret-file", &short], "8–128"),
        (&["client", "set-secret", "loopback", "--secret-file", &empty], "empty"),
    ];
    for (args, says) in refusals {
        let out = n.cli(args).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{args:?} succeeded: {text}");
        assert!(text.contains(says), "{args:?}: {text}");
        assert!(!text.contains(OLD) && !text.contains(NEW), "no secret in errors: {text}");
    }
    // The secret is never taken from the command line.
    assert!(!n.cli(&["client", "set-secret", "loopback", "--secret", NEW]).output().unwrap().status.success());
    assert_eq!(n.ok(&["client", "show", "loopback", "--json"]), before, "nothing changed");

    // edit: refusals, then one field at a time
    for (args, says) in [
        (&["client", "edit", "nosuch", "--address", "127.0.0.2"][..], "not found"),
        (&["client", "edit", "loopback"][..], "at least one"),
        (&["client", "edit", "loopback", "--address", "not-an-address"][..], "address"),
        (&["client", "edit", "loopback", "--message-authenticator", "sometimes"][..], "sometimes"),
    ] {
        let out = n.cli(args).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{args:?} succeeded: {text}");
        assert!(text.contains(says), "{args:?}: {text}");
    }
    assert_eq!(n.ok(&["client", "show", "loopback", "--json"]), before, "nothing changed");
    n.start();
    let addr = n.listening("radius");
    let out = n.ok(&["client", "edit", "loopback", "--address", "127.0.0.0/8", "--default-realm", "corp"]);
    assert!(out.contains("127.0.0.0/8") && out.contains("corp"), "{out}");
    let v = show(&n);
    assert_eq!((v["address"].as_str(), v["message_authenticator"].as_str()), (Some("127.0.0.0/8"), Some("require")));
    let text = n.ok(&["client", "show", "loopback"]);
    assert!(text.contains("default realm:         corp"), "{text}");
    n.ok(&["client", "edit", "loopback", "--no-default-realm"]);
    assert!(n.ok(&["client", "show", "loopback"]).contains("(policy default)"));
    assert_eq!(cluster::audit(&n, "radius_client.edit").iter().filter(|a| a["result"] == "ok").count(), 2);
    // The secret stayed: the server (after its reload) answers the old one.
    eventually("the edited client served with its secret", || {
        radclient_pap(&addr, OLD, "hal", &hotp_code(SEED, 0), "", 1).code.as_deref() == Some("Access-Accept")
    });

    // Without --keep-old-for: the old secret is refused as soon as the
    // server has re-read its clients, the new one answered.
    let out = n.ok_stdin(&["client", "set-secret", "loopback", "--secret-stdin"], &format!("{NEW}\n"));
    assert!(out.contains("refused from now on"), "{out}");
    assert_eq!(show(&n)["secret_change"]["old_secret"], "none");
    eventually("the new secret served", || {
        radclient_pap(&addr, NEW, "hal", &hotp_code(SEED, 1), "", 1).code.as_deref() == Some("Access-Accept")
    });
    assert_eq!(radclient_pap(&addr, OLD, "hal", &hotp_code(SEED, 2), "", 1).code, None);
    n.stop();
}

/// An unsigned Access-Request (client in mode `off`) made with the old
/// secret during the overlap is decided with the old secret: accepted with
/// the right code, never counted as a failure because the password was
/// read with the wrong secret; one readable under neither secret (a third
/// one) is refused without counting either.
#[tokio::test]
async fn unsigned_requests_with_the_old_secret_are_not_misread() {
    if !require_tool("radclient") {
        return;
    }
    let mut n = node("off");
    n.start();
    let addr = n.listening("radius");
    let unsigned = |secret: &str, code: &str| {
        radclient(&addr, "auth", secret, &format!("User-Name = \"hal\", User-Password = \"{code}\"\n"), 1)
    };
    let f = write(&n, "new.secret", &format!("{NEW}\n"));
    n.ok(&["client", "set-secret", "loopback", "--secret-file", &f, "--keep-old-for", "10m"]);
    eventually("the server takes the new secret", || probe(&addr, NEW, false));
    // Several rounds, with the right codes (each request a new
    // authenticator, so a new reading under the wrong secret).
    for counter in 0..6 {
        let secret = if counter % 2 == 0 { OLD } else { NEW };
        let r = unsigned(secret, &hotp_code(SEED, counter));
        assert_eq!(r.code.as_deref(), Some("Access-Accept"), "counter {counter} with {secret}: {}", r.output);
    }
    for _ in 0..5 {
        // Refused unchecked (and the reply, signed with the new secret,
        // does not verify for the sender): nothing counted, never locked.
        let r = unsigned(THIRD, &hotp_code(SEED, 6));
        assert_ne!(r.code.as_deref(), Some("Access-Accept"), "{}", r.output);
    }
    assert_eq!(failures(&n, "hal"), 0, "nothing counted against the user");
    let r = unsigned(OLD, &hotp_code(SEED, 6));
    assert_eq!(r.code.as_deref(), Some("Access-Accept"), "not locked: {}", r.output);
    n.stop();
}
