//! Issue 14: the time an answer takes must not tell who exists. Over REST
//! against the real binary, an unknown user, locked users (with and without
//! a local password), a code-only user and a user with a local password are
//! answered in the same time for each input shape: a code alone (no argon2
//! for anyone), and password + code (one argon2 verification for everyone).
//!
//! Built to hold on a busy two-core CI machine: the groups are interleaved
//! (every round asks each group once, in a random order), each answer's
//! time is taken relative to its round's (see [`Medians`]), medians are
//! compared, only within one input shape, and a failed comparison is
//! measured once more before it fails the test (a real leak, 25 ms against
//! 1 ms, fails both).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::support::TestNode;

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const PASSWORD: &str = "correct horse battery";
/// Samples per group and shape.
const ROUNDS: usize = 36;
/// How far apart the medians of one shape may be: max / min.
const TOLERANCE: f64 = 1.20;

/// Who answers, as the name logged in with.
const GROUPS: [&str; 5] = ["nobody", "pw", "codeonly", "lockedpw", "lockedcode"];

/// The two input shapes: a code alone, and a (wrong) password with a code.
const SHAPES: [(&str, &str); 2] = [("code", "000000"), ("password+code", "not the password000000")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_times_do_not_tell_unknown_locked_and_existing_users_apart() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    for (user, password) in [("pw", true), ("codeonly", false), ("lockedpw", true), ("lockedcode", false)] {
        if password {
            n.ok_stdin(&["user", "add", user, "--password-stdin"], &format!("{PASSWORD}\n"));
        } else {
            n.ok(&["user", "add", user]);
        }
        n.ok(&["token", "add", user, "--secret", SECRET]);
    }
    // Locked until an admin unlocks; the two users who stand for existing
    // ones are unlocked after every round (two failures a round).
    n.ok(&["policy", "set", "lockout_threshold=3", "auto_unlock_seconds=0"]);
    let api_key = n.ok(&["api-key", "create", "timing"]).trim().to_string();
    n.start();
    for user in ["lockedpw", "lockedcode"] {
        for _ in 0..3 {
            n.validate(user, "000000").await;
        }
        let v = n.validate(user, "000000").await;
        assert_eq!(v["result"], "reject", "{v}");
    }
    let status: serde_json::Value = serde_json::from_str(&n.ok(&["user", "show", "lockedpw", "--json"])).unwrap();
    assert_eq!(status["user"]["status"], "locked", "{status}");

    let mut last = String::new();
    for attempt in 1..=2 {
        let m = measure(&n, &api_key).await;
        let report = m.report();
        eprintln!("answer times (attempt {attempt}):\n{report}");
        if SHAPES.iter().all(|(shape, _)| m.spread(shape) <= TOLERANCE) {
            // The shapes themselves differ: a code costs no argon2.
            assert!(m.overall("password+code") > m.overall("code"), "password-shaped inputs cost argon2:\n{report}");
            return;
        }
        last = report;
    }
    panic!("answer times differ by more than {:.0}% within an input shape:\n{last}", (TOLERANCE - 1.0) * 100.0);
}

type Key = (&'static str, &'static str);

/// Per (shape, group): the median answer time, and the median of each
/// answer's time relative to its round (the median of that round's five
/// answers of the shape). A round lasts milliseconds, so the relative
/// times hold still while the machine's load comes and goes; the plain
/// medians of a load that switches between two levels jump between them.
struct Medians {
    raw: BTreeMap<Key, Duration>,
    relative: BTreeMap<Key, f64>,
}

impl Medians {
    /// max / min of the groups' relative medians for `shape`.
    fn spread(&self, shape: &str) -> f64 {
        let of: Vec<f64> = self.relative.iter().filter(|((s, _), _)| *s == shape).map(|(_, r)| *r).collect();
        of.iter().copied().fold(f64::MIN, f64::max) / of.iter().copied().fold(f64::MAX, f64::min)
    }

    /// The median of the groups' plain medians for `shape`.
    fn overall(&self, shape: &str) -> Duration {
        median(self.raw.iter().filter(|((s, _), _)| *s == shape).map(|(_, d)| *d).collect())
    }

    fn report(&self) -> String {
        let mut out = String::new();
        for (shape, _) in SHAPES {
            let line: Vec<String> = GROUPS
                .iter()
                .map(|g| {
                    let k = (shape, *g);
                    format!("{g} {:.2} ms ({:.2})", self.raw[&k].as_secs_f64() * 1000.0, self.relative[&k])
                })
                .collect();
            out += &format!("  {shape:>13}: {} — relative max/min {:.2}\n", line.join(", "), self.spread(shape));
        }
        out
    }
}

fn median<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// `ROUNDS` interleaved rounds of one request per group and shape.
async fn measure(n: &TestNode, api_key: &str) -> Medians {
    let client = n.client();
    let mut samples: BTreeMap<Key, Vec<Duration>> = BTreeMap::new();
    let mut relative: BTreeMap<Key, Vec<f64>> = BTreeMap::new();
    let mut order: Vec<usize> = (0..GROUPS.len()).collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    // Round 0 warms up (connections, the dummy hash made at first use).
    for round in 0..=ROUNDS {
        // Each round asks every group once per shape, in a fresh random
        // order: a request right after an argon2 one runs on colder caches,
        // and no group may always be the one that pays for it. (The unlocks
        // at the end of a round come between the two kinds.)
        for (shape, input) in SHAPES {
            shuffle(&mut order, &mut rng);
            let mut this_round = Vec::with_capacity(GROUPS.len());
            for &g in &order {
                let group = GROUPS[g];
                let started = Instant::now();
                let r = client
                    .post(n.url("/api/v1/validate"))
                    .json(&json!({"username": group, "password": input}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let body: serde_json::Value = r.json().await.unwrap();
                let took = started.elapsed();
                assert_eq!(
                    (status.as_u16(), body["result"].as_str()),
                    (200, Some("reject")),
                    "{group} {shape}: {body}"
                );
                this_round.push((group, took));
            }
            if round > 0 {
                let mid = median(this_round.iter().map(|(_, d)| *d).collect()).as_secs_f64();
                for (group, took) in this_round {
                    samples.entry((shape, group)).or_default().push(took);
                    relative.entry((shape, group)).or_default().push(took.as_secs_f64() / mid);
                }
            }
        }
        for user in ["pw", "codeonly"] {
            let r =
                client.post(n.url(&format!("/api/v1/users/{user}/unlock"))).bearer_auth(api_key).send().await.unwrap();
            assert!(r.status().is_success(), "unlock {user}: {}", r.status());
        }
    }
    Medians {
        raw: samples.into_iter().map(|(k, v)| (k, median(v))).collect(),
        relative: relative.into_iter().map(|(k, v)| (k, median(v))).collect(),
    }
}

/// Fisher–Yates with xorshift64: the order needs no more than to vary.
fn shuffle(v: &mut [usize], state: &mut u64) {
    for i in (1..v.len()).rev() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        v.swap(i, (*state % (i as u64 + 1)) as usize);
    }
}
