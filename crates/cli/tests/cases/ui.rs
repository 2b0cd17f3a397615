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
        Self::at(n, &n.url(""))
    }

    /// A browser for another listener of the node (`https://addr`).
    pub fn at(n: &TestNode, base: &str) -> Self {
        let pem = std::fs::read(n.data().join("tls/cert.pem")).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap();
        Web { client, base: base.to_string(), cookies: HashMap::new() }
    }

    /// A `multipart/form-data` POST (a file upload form): text fields, and
    /// one file as (field, file name, bytes).
    pub async fn post_multipart(&mut self, path: &str, fields: &[(&str, &str)], file: (&str, &str, &[u8])) -> Page {
        let boundary = "----tessera-test-boundary-7d1f";
        let mut body = Vec::new();
        for (k, v) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
            );
        }
        let (field, name, data) = file;
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await;
        self.page(r.unwrap()).await
    }

    /// A GET whose body is bytes (a download); the UI headers are checked.
    pub async fn get_bytes(&mut self, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let r = self.client.get(format!("{}{path}", self.base)).header("cookie", self.cookie_header()).send().await;
        let r = r.unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        assert_ui_headers(&headers);
        (status, headers, r.bytes().await.unwrap().to_vec())
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
        .post("/admin/login", &[("csrf", &login.csrf()), ("username", "root"), ("password", "correct horse battery")])
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
        w.post("/admin/login", &[("csrf", "nope"), ("username", "root"), ("password", "correct horse battery")]).await;
    assert_eq!(bad.status, 403);
    let login = if bad.status == 403 { w.get("/admin/login").await } else { login };
    let wrong =
        w.post("/admin/login", &[("csrf", &login.csrf()), ("username", "root"), ("password", "wrong password")]).await;
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
        .post("/admin/login", &[("csrf", &login.csrf()), ("username", "root"), ("password", "correct horse battery")])
        .await;
    assert_eq!(r.location.as_deref(), Some("/admin/totp"));
    assert_eq!(w.get("/admin/enroll").await.location.as_deref(), Some("/admin/login"), "no second enrollment");
    let totp = w.get("/admin/totp").await;
    // A mistyped code keeps the code step (the failure still counts toward the lock).
    let wrong = w.post("/admin/totp", &[("csrf", &totp.csrf()), ("code", "000000")]).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("did not match") && wrong.body.contains("action=\"/admin/totp\""), "{}", wrong.body);
    assert_eq!(w.get("/admin/totp").await.status, 200, "still at the code step, not back to the password");
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
    assert!(
        codes.iter().all(|c| c.len() == 11 && c.as_bytes()[5] == b'-'),
        "grouped as the CLI prints them: {codes:?}"
    );
    assert!(reg.body.contains("from the moment you confirm"), "the page says when the codes start to work");
    // Issue 15: until the token is confirmed the backup codes are not a
    // second factor of their own (a user who opens /register and leaves
    // holds nothing that logs in); refused, not counted.
    let early = n.validate("bob", &format!("bob's long password{}", codes[0])).await;
    assert_eq!(early["result"], "reject");
    let show: serde_json::Value = serde_json::from_str(&n.ok(&["user", "show", "bob", "--json"])).unwrap();
    assert_eq!((show["user"]["status"].as_str(), show["user"]["failures"].as_u64()), (Some("unregistered"), Some(0)));
    let audit: serde_json::Value =
        serde_json::from_str(&n.ok(&["audit", "list", "--action", "validate", "--json"])).unwrap();
    assert_eq!(audit[0]["reason"], "no_active_token");
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
    assert!(code.body.contains(r#"pattern="[0-9 \-]*""#), "the code field takes the dash: {}", code.body);
    let r = w.post("/code", &[("csrf", &code.csrf()), ("code", &codes[0])]).await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/")));
    // confirmed, the other codes work everywhere (here over REST), once
    let rest = n.validate("bob", &format!("bob's long password{}", codes[1])).await;
    assert_eq!(rest["result"], "accept");
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
        let r = w
            .post("/admin/login", &[("csrf", &login.csrf()), ("username", "root"), ("password", "wrong password")])
            .await;
        assert_eq!(r.status, 401);
    }
    // Locked: the right password is refused too, with the same message.
    let login = w.get("/admin/login").await;
    let r = w
        .post("/admin/login", &[("csrf", &login.csrf()), ("username", "root"), ("password", "correct horse battery")])
        .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Sign-in refused"));
    assert!(n.ok(&["admin", "list", "--json"]).contains("\"locked\": true"));
    let audit = n.ok(&["audit", "list", "--action", "admin.signin", "--json"]);
    assert!(audit.contains("now locked") && audit.contains("\"locked\""), "{audit}");
    // An unknown name is refused the same way.
    let login = w.get("/admin/login").await;
    let r = w
        .post("/admin/login", &[("csrf", &login.csrf()), ("username", "nobody"), ("password", "correct horse battery")])
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

/// The link target of the user named `name` in a users table page.
fn user_href(page: &Page, name: &str) -> String {
    let i = page.body.find(&format!(">{name}</a>")).unwrap_or_else(|| panic!("{name} not listed: {}", page.body));
    let start = page.body[..i].rfind("href=\"").unwrap() + 6;
    page.body[start..i - 1].to_string()
}

#[tokio::test]
async fn console_pages_get_and_post_with_csrf_refusals_and_no_secrets_shown() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok_stdin(&["admin", "add", "root", "--password-stdin"], "correct horse battery\n");
    n.ok(&["user", "add", "jo"]);
    n.ok(&["user", "add", "dora"]);
    n.ok(&["token", "add", "jo", "--secret", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "--serial", "JO-SOFT-1"]);
    n.ok(&["realm", "add", "corp"]);
    let backups = n.cwd().join("backups");
    let pass_file = n.cwd().join("backup.pass");
    std::fs::write(&pass_file, "backup passphrase never shown\n").unwrap();
    n.start_with(&[
        ("TESSERA_BACKUP_DIR", backups.to_str().unwrap()),
        ("TESSERA_BACKUP_PASSPHRASE_FILE", pass_file.to_str().unwrap()),
        ("TESSERA_RADIUS_ACCOUNTING_LISTEN", "127.0.0.1:0"),
    ]);
    for _ in 0..5 {
        n.validate("jo", "000000").await;
    }
    let mut w = Web::new(&n);

    // Not signed in: every console page sends to the sign-in form, every POST is refused.
    let pages = [
        "/admin/dashboard",
        "/admin/tokens",
        "/admin/radius",
        "/admin/realms",
        "/admin/policy",
        "/admin/audit",
        "/admin/backups",
        "/admin/replication",
        "/admin/users/1",
    ];
    for p in pages {
        assert_eq!(w.get(p).await.location.as_deref(), Some("/admin/login"), "{p}");
    }
    admin_first_sign_in(&mut w).await;

    // Every page answers, with every nav link.
    for p in &pages[..8] {
        let page = w.get(p).await;
        assert_eq!(page.status, 200, "{p}: {}", page.body);
        for link in &pages[..8] {
            assert!(page.body.contains(&format!("href=\"{link}\"")), "{p} lacks a link to {link}");
        }
        assert!(page.body.contains("aria-current=\"page\""), "{p}");
    }
    let dash = w.get("/admin/dashboard").await;
    assert!(dash.body.contains("id=\"user-count\">2<"), "{}", dash.body);
    assert!(dash.body.contains("id=\"count-locked\">1<") && dash.body.contains("id=\"count-unregistered\">1<"));
    assert!(dash.body.contains("id=\"locked-users\"") && dash.body.contains(">jo</a>"));
    assert!(dash.body.contains(&format!("127.0.0.1:{}", n.https_port())), "listeners shown");
    // Every bound socket, as bound (the OS chose these ports): RADIUS
    // authentication and accounting too.
    for kind in ["radius", "radius-accounting"] {
        assert!(dash.body.contains(&n.listening(kind)), "{kind} listener on the dashboard: {}", dash.body);
    }
    let csrf = dash.csrf();

    // A POST without a CSRF token, or with a wrong one, is refused on every form.
    let users = w.get("/admin/users").await;
    let jo = user_href(&users, "jo");
    let dora = user_href(&users, "dora");
    let posts = [
        format!("{jo}/token"),
        format!("{jo}/group"),
        "/admin/tokens/assign".into(),
        "/admin/tokens/unassign".into(),
        "/admin/radius/add".into(),
        "/admin/radius/delete".into(),
        "/admin/radius/secret".into(),
        "/admin/realms/test".into(),
        "/admin/policy".into(),
        "/admin/backups/create".into(),
        "/admin/users/action".into(),
    ];
    for p in &posts {
        assert_eq!(w.post(p, &[("name", "x")]).await.status, 403, "{p} without csrf");
        assert_eq!(w.post(p, &[("csrf", "0123"), ("name", "x")]).await.status, 403, "{p} with a wrong csrf");
    }
    let r =
        w.post_multipart("/admin/tokens/import", &[("format", "csv")], ("file", "t.csv", b"S1,GEZDGNBVGY3TQOJQ")).await;
    assert_eq!(r.status, 403, "import without csrf");

    // User page: tokens with type/serial/state, backup codes left, groups, audit; actions.
    let page = w.get(&jo).await;
    assert_eq!(page.status, 200);
    for text in ["JO-SOFT-1", "TOTP 30s", "active", "id=\"backup-codes-left\">0<", "status-locked", "validate"] {
        assert!(page.body.contains(text), "user page lacks {text}: {}", page.body);
    }
    assert!(!page.body.contains("GEZDGNBVGY3TQOJQ"), "no secret on the user page");
    let r = w.post(&format!("{jo}/group"), &[("csrf", &csrf), ("group", "vpn-users"), ("op", "add")]).await;
    assert_eq!((r.status, r.location.clone()), (303, Some(format!("{jo}?done=group-add"))));
    assert!(w.get(&jo).await.body.contains("vpn-users"));
    let r = w.post(&format!("{jo}/group"), &[("csrf", &csrf), ("group", "bad\u{7}group"), ("op", "add")]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = w
        .post("/admin/users/action", &[("csrf", &csrf), ("user", &jo[13..]), ("action", "unlock"), ("back", "detail")])
        .await;
    assert_eq!(r.location, Some(format!("{jo}?done=unlock")));
    assert!(w.get(&jo).await.body.contains("id=\"user-status\">active"));
    let token_id = between(&page.body, "name=\"token\" value=\"", "\"").unwrap();
    let confirm = w.post(&format!("{jo}/token"), &[("csrf", &csrf), ("token", &token_id)]).await;
    assert!(confirm.status == 200 && confirm.body.contains("Yes, delete token JO-SOFT-1"));
    let r = w.post(&format!("{jo}/token"), &[("csrf", &csrf), ("token", &token_id), ("confirm", "yes")]).await;
    assert_eq!(r.location, Some(format!("{jo}?done=token-delete")));
    assert!(n.ok(&["user", "show", "jo"]).contains("unregistered"));
    // Another user's page cannot delete jo's tokens (ids are checked against the user).
    let r = w.post(&format!("{dora}/token"), &[("csrf", &csrf), ("token", &token_id), ("confirm", "yes")]).await;
    assert_eq!(r.status, 404);

    // Token inventory: import (plain CSV, one bad row refused, then skipped), assign, unassign.
    let csv = b"serial,secret\nHW-1,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\nHW-2,not a secret\n";
    let fields = [("csrf", csrf.as_str()), ("format", "csv")];
    let r = w.post_multipart("/admin/tokens/import", &fields, ("file", "seeds.csv", csv)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("nothing imported") && r.body.contains("HW-2"), "{}", r.body);
    assert!(!r.body.contains("GEZDGNBVGY3TQOJQ") && !r.body.contains("not a secret"), "no secret echoed");
    let fields = [("csrf", csrf.as_str()), ("format", "csv"), ("skip_bad", "1")];
    let r = w.post_multipart("/admin/tokens/import", &fields, ("file", "seeds.csv", csv)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Imported 1 token(s)"), "{}", r.body);
    let r = w.post_multipart("/admin/tokens/import", &[("csrf", &csrf), ("format", "xml")], ("file", "x", b"x")).await;
    assert!(r.status == 400 && r.body.contains("expected azure, csv or pskc"));
    let r = w.post("/admin/tokens/assign", &[("csrf", &csrf), ("serial", "HW-1"), ("user", "nobody")]).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = w.post("/admin/tokens/assign", &[("csrf", &csrf), ("serial", "HW-1"), ("user", "dora")]).await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/admin/tokens?done=assign")));
    let inv = w.get("/admin/tokens?assigned=yes").await;
    assert!(inv.body.contains("HW-1") && inv.body.contains(">dora</a>"), "{}", inv.body);
    assert!(n.ok(&["user", "show", "dora"]).contains("HW-1"));
    let r = w.post("/admin/tokens/unassign", &[("csrf", &csrf), ("serial", "HW-1")]).await;
    assert_eq!(r.location.as_deref(), Some("/admin/tokens?done=unassign"));
    assert!(!w.get("/admin/tokens?assigned=yes").await.body.contains("HW-1"));

    // RADIUS clients: add (the secret is never shown), refusals change nothing, delete with confirmation.
    let secret = "shared-secret-42-never-shown";
    let add = |name: &'static str, address: &'static str| {
        [("name", name), ("address", address), ("secret", secret), ("message_authenticator", "require")]
    };
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend(add("vpn-gw", "10.1.0.0/24"));
    let r = w.post("/admin/radius/add", &form).await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/admin/radius?done=add")));
    let mut bad = vec![("csrf", csrf.as_str())];
    bad.extend(add("other", "not-an-address"));
    let r = w.post("/admin/radius/add", &bad).await;
    assert_eq!(r.status, 400);
    assert!(!r.body.contains(secret), "the secret is not put back into the form");
    let list = w.get("/admin/radius").await;
    assert!(list.body.contains("vpn-gw") && list.body.contains("10.1.0.0/24") && !list.body.contains("other"));
    assert!(!list.body.contains(secret));
    assert!(n.ok(&["client", "list"]).contains("vpn-gw"));
    // Secret change with overlap (issue 19): refusals change nothing, the table says what is used.
    let new_secret = "second-shared-secret-never-shown";
    for (keep, sec) in [("forever", new_secret), ("24h", secret), ("31d", new_secret)] {
        let r = w
            .post(
                "/admin/radius/secret",
                &[("csrf", &csrf), ("name", "vpn-gw"), ("secret", sec), ("keep_old_for", keep)],
            )
            .await;
        assert_eq!(r.status, 400, "{keep}: {}", r.body);
        assert!(!r.body.contains(secret) && !r.body.contains(new_secret));
    }
    let r = w
        .post(
            "/admin/radius/secret",
            &[("csrf", &csrf), ("name", "vpn-gw"), ("secret", new_secret), ("keep_old_for", "1h")],
        )
        .await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/admin/radius?done=secret")));
    let list = w.get("/admin/radius?done=secret").await;
    assert!(list.body.contains("old secret accepted until"), "{}", list.body);
    assert!(!list.body.contains(secret) && !list.body.contains(new_secret));
    let r = w.post("/admin/radius/delete", &[("csrf", &csrf), ("name", "vpn-gw")]).await;
    assert!(r.status == 200 && r.body.contains("Yes, delete vpn-gw"));
    let r = w.post("/admin/radius/delete", &[("csrf", &csrf), ("name", "vpn-gw"), ("confirm", "yes")]).await;
    assert_eq!(r.location.as_deref(), Some("/admin/radius?done=delete"));
    assert!(!n.ok(&["client", "list"]).contains("vpn-gw"));

    // Realms: the test button runs the realm test.
    let realms = w.get("/admin/realms").await;
    assert!(realms.body.contains("corp") && realms.body.contains("test connection"));
    let r = w.post("/admin/realms/test", &[("csrf", &csrf), ("name", "corp")]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Test of corp") && r.body.contains("local passwords only"), "{}", r.body);
    assert_eq!(w.post("/admin/realms/test", &[("csrf", &csrf), ("name", "nope")]).await.status, 404);

    // Policy: saved through the same rules as `policy set`; a bad value saves nothing.
    let good = [
        ("csrf", csrf.as_str()),
        ("skew_seconds", "60"),
        ("lockout_mode", "lock"),
        ("lockout_threshold", "4"),
        ("auto_unlock_seconds", "0"),
        ("registration_message", "Line one\r\n42"),
    ];
    let r = w.post("/admin/policy", &good).await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/admin/policy?done=saved")), "{}", r.body);
    let p: serde_json::Value = serde_json::from_str(&n.ok(&["policy", "show", "--json"])).unwrap();
    assert_eq!(p["skew_seconds"], 60);
    assert_eq!(p["lockout_threshold"], 4);
    assert_eq!(p["backup_codes_enabled"], false, "an unticked box is off");
    assert_eq!(p["registration_qr"], false);
    assert_eq!(p["registration_message"], "Line one\n42");
    let mut bad = good.to_vec();
    bad[3] = ("lockout_threshold", "11");
    bad.push(("backup_codes_enabled", "1"));
    let r = w.post("/admin/policy", &bad).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Not saved") && r.body.contains("lockout_threshold"), "{}", r.body);
    let after: serde_json::Value = serde_json::from_str(&n.ok(&["policy", "show", "--json"])).unwrap();
    assert_eq!(after, p, "nothing changed");

    // Audit log: filters and paging.
    let all = w.get("/admin/audit?action=policy.set").await;
    assert!(all.body.contains("policy.set") && all.body.contains("admin:root"));
    let rejects = w.get("/admin/audit?action=validate&result=reject&limit=25").await;
    assert_eq!(rejects.body.matches("wrong_code; failure").count(), 5, "{}", rejects.body);
    let user = w.get("/admin/audit?user=jo&since=2000-01-01&until=2999-12-31T23:59").await;
    assert!(user.body.contains("user.unlock") && user.body.contains("user.add"), "{}", user.body);
    assert!(w.get("/admin/audit?user=jo&until=2000-01-01").await.body.contains("0 record(s)"));
    for _ in 0..26 {
        n.validate("ghost", "000000").await;
    }
    let paged = w.get("/admin/audit?limit=25").await;
    assert!(paged.body.contains("25 record(s)"));
    let end = paged.body.find("\" rel=\"next\">Older").expect("an Older link");
    let older = &paged.body[paged.body[..end].rfind("href=\"").unwrap() + 6..end];
    let page2 = w.get(&older.replace("&#38;", "&")).await;
    assert_eq!(page2.status, 200);
    assert!(page2.body.contains("Newest"), "{older}: {}", page2.body);
    let bad = w.get("/admin/audit?since=yesterday").await;
    assert!(bad.status == 400 && bad.body.contains("is not a date"));

    // Backups: made by `backup create` (the passphrase from the file), listed, downloaded.
    let r = w.post("/admin/backups/create", &[("csrf", &csrf)]).await;
    assert_eq!(r.location.as_deref(), Some("/admin/backups?done=started"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let name = loop {
        let page = w.get("/admin/backups").await;
        assert!(!page.body.contains("backup passphrase never shown"));
        if let Some(name) = between(&page.body, "href=\"/admin/backups/file/", "\"")
            && !page.body.contains("id=\"backup-running\"")
        {
            break name;
        }
        assert!(std::time::Instant::now() < deadline, "no backup listed: {}", page.body);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let (status, headers, bytes) = w.get_bytes(&format!("/admin/backups/file/{name}")).await;
    assert_eq!(status, 200);
    assert!(headers.get("content-disposition").unwrap().to_str().unwrap().starts_with("attachment"));
    assert!(bytes.starts_with(b"age-encryption.org/v1"), "an age file");
    let (status, _, _) = w.get_bytes("/admin/backups/file/..%2Ftessera.key").await;
    assert_eq!(status, 404);
    let (status, _, _) = w.get_bytes("/admin/backups/file/backup-status.json").await;
    assert_eq!(status, 404);
    assert!(w.get("/admin/dashboard").await.body.contains(&name), "last backup on the dashboard");
    let out = n.ok_env(
        &["backup", "verify", &backups.join(&name).to_string_lossy(), "--passphrase-file", pass_file.to_str().unwrap()],
        &[],
    );
    assert!(out.contains("database"), "{out}");

    // Replication status.
    let rep = w.get("/admin/replication").await;
    assert!(rep.body.contains("id=\"node-role\">standalone<") && rep.body.contains("SQLite"));

    // The audit log names the web actor for each change.
    let audit = n.ok(&["audit", "list", "--actor", "admin:root", "--json"]);
    for action in [
        "group.add",
        "inventory.import",
        "inventory.assign",
        "radius_client.add",
        "policy.set",
        "backup.create",
        "realm.test",
    ] {
        assert!(audit.contains(action), "{action} not audited: {audit}");
    }
}

#[tokio::test]
async fn idle_sessions_end_after_the_configured_timeout() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok_stdin(&["admin", "add", "root", "--password-stdin"], "correct horse battery\n");
    n.start_with(&[("TESSERA_UI_IDLE_TIMEOUT_SECONDS", "4")]);
    let mut w = Web::new(&n);
    admin_first_sign_in(&mut w).await;
    // Requests within the timeout keep the session alive.
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert_eq!(w.get("/admin/users").await.status, 200);
    }
    let csrf = w.get("/admin/dashboard").await.csrf();
    tokio::time::sleep(std::time::Duration::from_millis(5500)).await;
    assert_eq!(w.get("/admin/users").await.location.as_deref(), Some("/admin/login"), "idle past the timeout");
    assert_eq!(w.post("/admin/policy", &[("csrf", &csrf)]).await.status, 403);
}

#[tokio::test]
async fn portal_listener_serves_only_the_portal_and_registration_is_internal_by_default() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok_stdin(&["admin", "add", "root", "--password-stdin"], "correct horse battery\n");
    n.ok_stdin(&["user", "add", "erin", "--password-stdin"], "erin's long password\n");
    n.ok_stdin(&["user", "add", "fred", "--password-stdin"], "fred's long password\n");
    n.start_with(&[("TESSERA_UI_PORTAL_LISTEN", "127.0.0.1:0"), ("TESSERA_UI_CONSOLE", "false")]);
    let portal = format!("https://{}", n.listening("portal"));
    let mut p = Web::at(&n, &portal);

    // The portal listener: the portal, and nothing else.
    assert_eq!(p.get("/").await.status, 200);
    for path in ["/admin/login", "/admin/users", "/healthz", "/metrics", "/api/openapi.json"] {
        assert_eq!(p.get(path).await.status, 404, "{path} on the portal listener");
    }
    // A POST is refused (no portal session) before routing; it never reaches an API.
    let r = p.client.post(format!("{portal}/api/v1/validate")).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_ui_headers(r.headers());
    assert!(!r.text().await.unwrap().contains("\"result\""));
    // The console is off on the main listener; the API is still there.
    assert_eq!(n.get("/admin/login").await.status(), 404);
    assert_eq!(n.get("/healthz").await.status(), 200);

    // An unregistered user cannot register through the portal listener…
    let form = p.get("/").await;
    let r =
        p.post("/login", &[("csrf", &form.csrf()), ("username", "erin"), ("password", "erin's long password")]).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("Registration not available here"));
    assert!(n.ok(&["user", "show", "erin"]).contains("unregistered"), "no pending token made");
    // … but can on the main listener, and then sign in through either.
    let mut w = Web::new(&n);
    let form = w.get("/").await;
    let r =
        w.post("/login", &[("csrf", &form.csrf()), ("username", "erin"), ("password", "erin's long password")]).await;
    assert_eq!(r.location.as_deref(), Some("/register"));
    let reg = w.get("/register").await;
    let secret = between(&reg.body, "id=\"secret\">", "<").unwrap();
    let ok = w.post("/register", &[("csrf", &reg.csrf()), ("code", &totp_now(&secret, 0))]).await;
    assert_eq!(ok.location.as_deref(), Some("/"));
    let form = p.get("/").await;
    let r =
        p.post("/login", &[("csrf", &form.csrf()), ("username", "erin"), ("password", "erin's long password")]).await;
    assert_eq!(r.location.as_deref(), Some("/code"));
    let code = p.get("/code").await;
    let r = p.post("/code", &[("csrf", &code.csrf()), ("code", &totp_now(&secret, 1))]).await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/")));

    // Registration starts are limited per user.
    let mut starts = Vec::new();
    for _ in 0..6 {
        let mut w = Web::new(&n);
        let form = w.get("/").await;
        let r = w
            .post("/login", &[("csrf", &form.csrf()), ("username", "fred"), ("password", "fred's long password")])
            .await;
        starts.push(r.status);
    }
    assert_eq!(starts, [303, 303, 303, 303, 303, 429], "the sixth start in the window is refused");
}
