//! Issue 15 (the first hour of a new administrator), the core items through
//! the binary: what `token confirm`, `backup-codes`, `token resync`,
//! `user show` and `audit list --target` say and do. `tessera check` runs
//! the real decision locally, so no server is needed here; the engine and
//! store halves are in `crates/server/tests/engine.rs` and the store
//! conformance suite.

use serde_json::Value;

use super::support::{TestNode, backup_codes, codes, totp_now};

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

fn show(n: &TestNode, user: &str) -> Value {
    serde_json::from_str(&n.ok(&["user", "show", user, "--json"])).unwrap()
}

/// Item 11: the confirming code is used up; the CLI says to use the next
/// one, and the same code right after is a replay (not counted).
#[test]
fn token_confirm_says_to_use_the_next_code() {
    let n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["user", "add", "alice"]);
    let e: Value = serde_json::from_str(&n.ok(&["token", "enroll", "alice", "--json"])).unwrap();
    let secret = e["secret"].as_str().unwrap().to_string();
    let code = totp_now(&secret, 0);
    let out = n.ok(&["token", "confirm", "alice", &code]);
    assert!(out.contains("is now active") && out.contains("use the next code to log in"), "{out}");
    let again = n.fail(&["check", "alice", &code], &[], 1);
    assert!(again.contains("reject (replayed_code)"), "{again}");
    assert_eq!(show(&n, "alice")["user"]["failures"], 0, "a replay is not counted");
    assert!(n.ok(&["check", "alice", &totp_now(&secret, 1)]).starts_with("accept"));
}

/// Item 3, the README's bob: codes issued before the token is confirmed
/// say so, do not log in (refused, not counted), and work once it is.
#[test]
fn backup_codes_before_the_first_confirmed_token_wait_for_it() {
    let n = TestNode::new();
    n.ok(&["init"]);
    n.ok_stdin(&["user", "add", "bob", "--password-stdin"], "correct horse battery\n");
    let e: Value = serde_json::from_str(&n.ok(&["token", "enroll", "bob", "--json"])).unwrap();
    let out = n.ok(&["backup-codes", "bob"]);
    assert!(out.contains("no confirmed token yet") && out.contains("work once a token is confirmed"), "{out}");
    let set = backup_codes(&out);
    assert_eq!(set.len(), 10, "{out}");
    let early = n.fail(&["check", "bob", &format!("correct horse battery{}", set[0])], &[], 1);
    assert!(early.contains("reject (no_active_token)"), "{early}");
    let s = show(&n, "bob");
    assert_eq!((s["user"]["status"].as_str(), s["user"]["failures"].as_u64()), (Some("unregistered"), Some(0)));
    assert_eq!(s["backup_codes_left"], 10);
    n.ok(&["token", "confirm", "bob", &totp_now(e["secret"].as_str().unwrap(), 0)]);
    let ok = n.ok(&["check", "bob", &format!("correct horse battery{}", set[0])]);
    assert!(ok.starts_with("accept (backup_code)"), "{ok}");
    // used once: the same code again is a replay, audited as one, not counted
    let replay = n.fail(&["check", "bob", &format!("correct horse battery{}", set[0])], &[], 1);
    assert!(replay.contains("reject (replayed_backup_code)"), "{replay}");
    assert_eq!(show(&n, "bob")["user"]["failures"], 0);
    // a registered user's new set needs no note
    assert!(!n.ok(&["backup-codes", "bob"]).contains("note:"));
}

/// Item 2: a device 600 s ahead is beyond `max_drift_steps` (10): the
/// resync is refused with why and what to do, and changes nothing.
#[test]
fn token_resync_beyond_max_drift_steps_is_refused() {
    let n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["user", "add", "dana"]);
    n.ok(&["token", "add", "dana", "--secret", SECRET, "--serial", "DANA-1"]);
    let before: Value = serde_json::from_str(&n.ok(&["token", "show", "DANA-1", "--json"])).unwrap();
    let p = support_params();
    let far = n.fail(
        &["token", "resync", "DANA-1", &codes::totp_with(SECRET, p, 600), &codes::totp_with(SECRET, p, 630)],
        &[],
        1,
    );
    for part in ["max_drift_steps = 10", "nothing was changed", "device's clock", "tessera policy set max_drift_steps="]
    {
        assert!(far.contains(part), "{part}: {far}");
    }
    assert!(!far.contains("resynchronised"), "{far}");
    let after: Value = serde_json::from_str(&n.ok(&["token", "show", "DANA-1", "--json"])).unwrap();
    assert_eq!((&after["counter"], &after["drift"]), (&before["counter"], &before["drift"]), "nothing changed");
    // within the cap it works
    let near =
        n.ok(&["token", "resync", "DANA-1", &codes::totp_with(SECRET, p, 120), &codes::totp_with(SECRET, p, 150)]);
    assert!(near.contains("resynchronised DANA-1"), "{near}");
}

fn support_params() -> super::support::Params {
    super::support::Params { digits: 6, sha: "SHA1", period: 30 }
}

/// Item 15: `user show` says what the grace policy still allows a user
/// without a token, and nothing once they have one.
#[test]
fn user_show_reports_the_grace_left() {
    let n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["policy", "set", "grace_logins=3", "grace_days=7"]);
    n.ok_stdin(&["user", "add", "carol", "--password-stdin"], "carol's long password\n");
    let text = n.ok(&["user", "show", "carol"]);
    assert!(text.contains("grace:         3 login(s) left, until "), "{text}");
    assert!(n.ok(&["check", "carol", "carol's long password"]).starts_with("accept (grace_login)"));
    let g = &show(&n, "carol")["grace"];
    assert_eq!((g["logins_left"].as_u64(), g["allowed_now"].as_bool()), (Some(2), Some(true)), "{g}");
    assert!(g["until"].as_str().is_some(), "{g}");
    for _ in 0..2 {
        n.ok(&["check", "carol", "carol's long password"]);
    }
    let text = n.ok(&["user", "show", "carol"]);
    assert!(text.contains("0 login(s) left") && text.contains("used up"), "{text}");
    // a confirmed token: grace no longer applies, and is not shown
    n.ok(&["token", "add", "carol", "--secret", SECRET]);
    assert!(!n.ok(&["user", "show", "carol"]).contains("grace:"));
    assert!(show(&n, "carol")["grace"].is_null());
    // the policy off: nothing shown
    n.ok(&["user", "add", "dave"]);
    n.ok(&["policy", "set", "grace_logins=0", "grace_days=0"]);
    assert!(!n.ok(&["user", "show", "dave"]).contains("grace:"));
}

/// Item 13: realm users are stored as `user@realm`; `--target` with the
/// bare name finds them (and token actions on their tokens).
#[test]
fn audit_list_target_finds_a_realm_user_by_the_bare_name() {
    let n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["user", "add", "lena", "--realm", "corp"]);
    n.ok(&["token", "add", "lena", "--realm", "corp", "--secret", SECRET, "--serial", "LENA-1"]);
    n.ok(&["user", "add", "lenart"]);
    n.fail(&["check", "lena", "--realm", "corp", "000000"], &[], 1);
    let records: Value = serde_json::from_str(&n.ok(&["audit", "list", "--target", "lena", "--json"])).unwrap();
    let targets: Vec<&str> = records.as_array().unwrap().iter().map(|r| r["target"].as_str().unwrap()).collect();
    assert_eq!(targets, ["lena@corp", "lena@corp LENA-1", "lena@corp"], "{records}");
    let exact: Value = serde_json::from_str(&n.ok(&["audit", "list", "--target", "lenart", "--json"])).unwrap();
    assert_eq!(exact.as_array().unwrap().len(), 1, "{exact}");
}

/// Item 4 over REST against a running server: one valid code sent 8 times
/// at once is 1 accept and 7 rejects audited `replayed_code`; nothing is
/// counted and the user is not locked (the default threshold is 5).
#[tokio::test]
async fn same_valid_code_eight_times_in_parallel_over_rest() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["user", "add", "erin"]);
    n.ok(&["token", "add", "erin", "--secret", SECRET]);
    n.start();
    let code = totp_now(SECRET, 0);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (c, url, code) = (n.client(), n.url("/api/v1/validate"), code.clone());
            tokio::spawn(async move {
                let body = serde_json::json!({"username": "erin", "password": code});
                c.post(url).json(&body).send().await.unwrap().json::<Value>().await.unwrap()
            })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        accepted += usize::from(t.await.unwrap()["result"] == "accept");
    }
    assert_eq!(accepted, 1);
    let audit: Value = serde_json::from_str(&n.ok(&["audit", "list", "--action", "validate", "--json"])).unwrap();
    let reasons: Vec<&str> = audit.as_array().unwrap().iter().filter_map(|a| a["reason"].as_str()).collect();
    assert_eq!(reasons.iter().filter(|r| **r == "replayed_code").count(), 7, "{reasons:?}");
    let s = show(&n, "erin");
    assert_eq!((s["user"]["status"].as_str(), s["user"]["failures"].as_u64()), (Some("active"), Some(0)));
    n.stop();
}
