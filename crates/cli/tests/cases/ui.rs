//! The web UI over real HTTPS (issue 7): admin console sign-in with
//! first-sign-in TOTP enrollment, the users table and its actions, the
//! self-service portal's registration and sign-in, and the refusals: bad
//! CSRF token, stale or missing session, wrong session kind. Every UI
//! response carries the strict CSP. The browser test (Chromium) is in
//! `ui_browser.rs`.

use std::collections::HashMap;

use crate::support::{TestNode, totp_now};

pub const UI_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// A minimal browser: no redirects followed, cookies kept by name.
pub struct Web {
    client: reqwest::Client,
    base: String,
    pub cookies: HashMap<String, String>,
}

pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    /// The value of the first `name="csrf"` hidden field.
    pub fn csrf(&self) -> String {
        between(&self.body, "name=\"csrf\" value=\"", "\"").unwrap_or_else(|| panic!("no csrf field in {}", self.body))
    }
}

pub fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(s[i..j].to_string())
}

impl Web {
    pub fn new(n: &TestNode) -> Self {
        let pem = std::fs::read(n.data().join("tls/cert.pem")).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Web { client, base: n.url(""), cookies: HashMap::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn page(&mut self, r: reqwest::Response) -> Page {
        for v in r.headers().get_all(reqwest::header::SET_COOKIE) {
            let v = v.to_str().unwrap();
            for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
                assert!(v.contains(attr), "cookie without {attr}: {v}");
            }
            let (kv, _) = v.split_once(';').unwrap();
            let (k, val) = kv.split_once('=').unwrap();
            if val.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let location = headers.get("location").map(|v| v.to_str().unwrap().to_string());
        let body = r.text().await.unwrap();
        assert_ui_headers(&headers);
        Page { status, location, body }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let r = self.client.get(format!("{}{path}", self.base)).header("cookie", self.cookie_header()).send().await;
        self.page(r.unwrap()).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body: String = form.iter().map(|(k, v)| format!("{k}={}", percent(v))).collect::<Vec<_>>().join("&");
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await;
        self.page(r.unwrap()).await
    }
}

fn percent(v: &str) -> String {
    v.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

pub fn assert_ui_headers(h: &reqwest::header::HeaderMap) {
    assert_eq!(h.get("content-security-policy").unwrap(), UI_CSP);
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
    assert_eq!(h.get("referrer-policy").unwrap(), "no-referrer");
    assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
    assert_eq!(h.get("cache-control").unwrap(), "no-store");
}

/// An admin named `root` signed in through enrollment; returns the TOTP secret.
pub async fn admin_first_sign_in(w: &mut Web) -> String {
    let login = w.get("/admin/login").await;
    assert_eq!(login.status, 200);
    let r = w
        .post("/admin/login", &[("csrf", &login.csrf()), ("name", "root"), ("password", "correct horse battery")])
        .await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/admin/enroll")));
    let enroll = w.get("/admin/enroll").await;
    assert!(enroll.body.contains("<svg"), "QR code shown");
    let secret = between(&enroll.body, "id=\"secret\">", "<").unwrap();
    let wrong = w.post("/admin/enroll", &[("csrf", &enroll.csrf()), ("code", "000000")]).await;
    assert_eq!(wrong.status, 401);
    let ok = w.post("/admin/enroll", &[("csrf", &enroll.csrf()), ("code", &totp_now(&secret, 0))]).await;
    assert_eq!((ok.status, ok.location.as_deref()), (303, Some("/admin/users")));
    secret
}

#[tokio::test]
async fn admin_console_sign_in_enrollment_users_table_and_refusals() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok_stdin(&["admin", "add", "root", "--password-stdin"], "correct horse battery\n");
    n.ok(&["user", "add", "alice"]);
    n.ok(&["user", "add", "alfred"]);
    n.ok(&["token", "add", "alice", "--secret", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"]);
    n.start();
    for _ in 0..5 {
        n.validate("alice", "000000").await;
    }
    let mut w = Web::new(&n);

    // Not signed in: pages send to the sign-in form; a POST is refused.
    let home = w.get("/admin").await;
    assert_eq!((home.status, home.location.as_deref()), (303, Some("/admin/login")));
    assert_eq!(w.get("/admin/users").await.location.as_deref(), Some("/admin/login"));
    let r = w.post("/admin/users/action", &[("csrf", "x"), ("user", "1"), ("action", "unlock")]).await;
    assert_eq!(r.status, 403);

    // A wrong CSRF token or a wrong password is refused.
    let login = w.get("/admin/login").await;
    let bad =
        w.post("/admin/login", &[("csrf", "nope"), ("name", "root"), ("password", "correct horse battery")]).await;
    assert_eq!(bad.status, 403);
    let login = if bad.status == 403 { w.get("/admin/login").await } else { login };
    let wrong =
        w.post("/admin/login", &[("csrf", &login.csrf()), ("name", "root"), ("password", "wrong password")]).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Sign-in refused"));

    let secret = admin_first_sign_in(&mut w).await;
    let users = w.get("/admin/users").await;
    assert_eq!(users.status, 200);
    assert!(!users.body.contains(&secret), "the TOTP secret is never shown after enrollment");
    assert!(users.body.contains("alice") && users.body.contains("alfred"));
    assert!(users.body.contains("status-locked"), "{}", users.body);
    // Search: `*` wildcard, case-sensitive.
    let found = w.get("/admin/users?q=alf*").await;
    assert!(found.body.contains("alfred") && !found.body.contains(">alice<"));
    let none = w.get("/admin/users?q=ALF*").await;
    assert!(!none.body.contains("alfred"));
    // Paging: one per page.
    let p1 = w.get("/admin/users?q=al*&limit=1&page=1").await;
    assert!(p1.body.contains("rel=\"next\""));

    // Unlock alice (CSRF-checked); delete needs a confirmation first.
    let csrf = users.csrf();
    let alice_id = {
        let i = users.body.find(">alice<").unwrap();
        between(&users.body[i..], "name=\"user\" value=\"", "\"").unwrap()
    };
    let r = w.post("/admin/users/action", &[("csrf", "bad"), ("user", &alice_id), ("action", "unlock")]).await;
    assert_eq!(r.status, 403);
    let r = w.post("/admin/users/action", &[("csrf", &csrf), ("user", &alice_id), ("action", "unlock")]).await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/admin/users?done=unlock")));
    let show: serde_json::Value = serde_json::from_str(&n.ok(&["user", "show", "alice", "--json"])).unwrap();
    assert_eq!((show["user"]["status"].as_str(), show["user"]["failures"].as_u64()), (Some("active"), Some(0)));
    let confirm = w.post("/admin/users/action", &[("csrf", &csrf), ("user", &alice_id), ("action", "delete")]).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("cannot be undone"));
    let r = w
        .post("/admin/users/action", &[("csrf", &csrf), ("user", &alice_id), ("action", "delete"), ("confirm", "yes")])
        .await;
    assert_eq!(r.status, 303);
    assert!(!w.get("/admin/users").await.body.contains(">alice<"));
    let audit = n.ok(&["audit", "list", "--json"]);
    assert!(audit.contains("admin:root") && audit.contains("user.delete"), "{audit}");
    let dash = w.get("/admin/dashboard").await;
    assert_eq!(dash.status, 200);
    assert!(dash.body.contains("id=\"user-count\">1<"), "{}", dash.body);
    assert!(dash.body.contains("user.delete") && dash.body.contains("admin.totp_enroll"));

    // Sign out: the old session is dead, its forms refused.
    let r = w.post("/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/admin/login")));
    let old_cookie = w.cookies.clone();
    assert_eq!(w.get("/admin/users").await.location.as_deref(), Some("/admin/login"));

    // Second sign-in: password, then the next code (the enrollment code is used).
    let login = w.get("/admin/login").await;
    let r = w
        .post("/admin/login", &[("csrf", &login.csrf()), ("name", "root"), ("password", "correct horse battery")])
        .await;
    assert_eq!(r.location.as_deref(), Some("/admin/totp"));
    assert_eq!(w.get("/admin/enroll").await.location.as_deref(), Some("/admin/login"), "no second enrollment");
    let totp = w.get("/admin/totp").await;
    let r = w.post("/admin/totp", &[("csrf", &totp.csrf()), ("code", &totp_now(&secret, 1))]).await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/admin/users")));
    // The session id changed at sign-in: the cookie from before is worthless.
    let mut stale = Web::new(&n);
    stale.cookies = old_cookie;
    assert_eq!(stale.get("/admin/users").await.location.as_deref(), Some("/admin/login"));

    // A portal session is not an admin session.
    n.ok_stdin(&["user", "add", "bob", "--password-stdin"], "bob's long password\n");
    let mut p = Web::new(&n);
    let form = p.get("/").await;
    let r = p.post("/login", &[("csrf", &form.csrf()), ("username", "bob"), ("password", "bob's long password")]).await;
    assert_eq!(r.location.as_deref(), Some("/register"));
    assert_eq!(p.get("/admin/users").await.location.as_deref(), Some("/admin/login"));

    // The API keeps its own, stricter CSP.
    let h = n.get("/healthz").await;
    assert_eq!(h.headers().get("content-security-policy").unwrap(), "default-src 'none'; frame-ancestors 'none'");
    let list = n.ok(&["admin", "list"]);
    assert!(list.contains("root") && list.contains("yes"), "{list}");
}

#[tokio::test]
async fn portal_registration_then_code_or_backup_code_sign_in() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok_stdin(&["user", "add", "bob", "--password-stdin"], "bob's long password\n");
    n.ok(&["user", "add", "nopass"]);
    n.ok(&["policy", "set", "registration_message=Scan with the company authenticator."]);
    n.start();
    let mut w = Web::new(&n);

    // A user without a first factor cannot register here.
    let form = w.get("/").await;
    let r = w.post("/login", &[("csrf", &form.csrf()), ("username", "nopass"), ("password", "anything at all")]).await;
    assert_eq!(r.status, 401);

    let form = w.get("/").await;
    let r = w.post("/login", &[("csrf", &form.csrf()), ("username", "bob"), ("password", "bob's long password")]).await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/register")));
    let reg = w.get("/register").await;
    assert!(reg.body.contains("Scan with the company authenticator."));
    assert!(reg.body.contains("<svg"));
    let secret = between(&reg.body, "id=\"secret\">", "<").unwrap();
    let codes: Vec<String> = between(&reg.body, "id=\"backup-codes\">", "</ul>")
        .unwrap()
        .split("<li>")
        .filter_map(|c| c.split("</li>").next().map(|c| c.trim().to_string()))
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(codes.len(), 10, "{codes:?}");
    let wrong = w.post("/register", &[("csrf", &reg.csrf()), ("code", "000000")]).await;
    assert_eq!(wrong.status, 401);
    let ok = w.post("/register", &[("csrf", &reg.csrf()), ("code", &totp_now(&secret, 0))]).await;
    assert_eq!((ok.status, ok.location.as_deref()), (303, Some("/")));
    let home = w.get("/").await;
    assert!(home.body.contains("Your account"));
    assert!(!home.body.contains(&secret));
    assert_eq!(w.get("/register").await.location.as_deref(), Some("/"), "the secret is never shown again");
    assert!(n.ok(&["user", "show", "bob"]).contains("active"));

    // Sign out; sign in again with a backup code; make new backup codes.
    let r = w.post("/logout", &[("csrf", &home.csrf())]).await;
    assert_eq!(r.status, 303);
    let form = w.get("/").await;
    let r = w.post("/login", &[("csrf", &form.csrf()), ("username", "bob"), ("password", "bob's long password")]).await;
    assert_eq!(r.location.as_deref(), Some("/code"));
    let code = w.get("/code").await;
    let r = w.post("/code", &[("csrf", &code.csrf()), ("code", &codes[0])]).await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/")));
    let home = w.get("/").await;
    let fresh = w.post("/backup-codes", &[("csrf", &home.csrf())]).await;
    assert_eq!(fresh.status, 200);
    assert_eq!(between(&fresh.body, "id=\"backup-codes\">", "</ul>").unwrap().matches("<li>").count(), 10);
    // A stale CSRF token is refused.
    let r = w.post("/backup-codes", &[("csrf", "0000")]).await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn admin_sign_in_locks_like_users_and_reset_unlocks_and_re_enrolls() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok_stdin(&["admin", "add", "root", "--password-stdin"], "correct horse battery\n");
    n.ok(&["policy", "set", "lockout_threshold=3"]);
    n.start();
    let mut w = Web::new(&n);
    let secret = admin_first_sign_in(&mut w).await;
    for _ in 0..3 {
        let login = w.get("/admin/login").await;
        let r =
            w.post("/admin/login", &[("csrf", &login.csrf()), ("name", "root"), ("password", "wrong password")]).await;
        assert_eq!(r.status, 401);
    }
    // Locked: the right password is refused too, with the same message.
    let login = w.get("/admin/login").await;
    let r = w
        .post("/admin/login", &[("csrf", &login.csrf()), ("name", "root"), ("password", "correct horse battery")])
        .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Sign-in refused"));
    assert!(n.ok(&["admin", "list", "--json"]).contains("\"locked\": true"));
    let audit = n.ok(&["audit", "list", "--action", "admin.signin", "--json"]);
    assert!(audit.contains("now locked") && audit.contains("\"locked\""), "{audit}");
    // An unknown name is refused the same way.
    let login = w.get("/admin/login").await;
    let r = w
        .post("/admin/login", &[("csrf", &login.csrf()), ("name", "nobody"), ("password", "correct horse battery")])
        .await;
    assert_eq!(r.status, 401);
    // Reset: unlocked, and the TOTP is enrolled again (a new secret).
    n.ok(&["admin", "reset", "root"]);
    let again = admin_first_sign_in(&mut w).await;
    assert_ne!(again, secret);
    assert_eq!(w.get("/admin/users").await.status, 200);
    // Deleting the admin (from another process) ends their session.
    n.ok(&["admin", "delete", "root"]);
    assert_eq!(w.get("/admin/users").await.location.as_deref(), Some("/admin/login"));
}
