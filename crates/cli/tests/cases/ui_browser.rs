//! The web UI in a real browser (issue 7): Debian's Chromium, headless,
//! driven through chromedriver (WebDriver) with fantoccini. An admin's
//! first sign-in with TOTP enrollment and the users table; a portal user's
//! registration. Screenshots of each page go to `target/ui-screenshots/`.
//! Skipped with a message when chromium or chromedriver is missing, unless
//! `TESSERA_REQUIRE_TOOLS=1`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::{TestNode, require_tool, totp_now};

/// chromedriver, stopped (by its own pid) when the test ends.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Driver { child, port }
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert("acceptInsecureCerts".into(), json!(true));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session")
}

fn shots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("..").join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots_dir().join(format!("{name}.png")), png).unwrap();
}

/// The element, waiting up to 15 s for it to appear (pages load while we look).
async fn find(c: &Client, what: Locator<'_>) -> fantoccini::elements::Element {
    c.wait().at_most(Duration::from_secs(15)).for_element(what).await.unwrap()
}

async fn fill(c: &Client, id: &str, text: &str) {
    find(c, Locator::Id(id)).await.send_keys(text).await.unwrap();
}

async fn submit(c: &Client) {
    find(c, Locator::Css("main form button[type=submit]")).await.click().await.unwrap();
}

async fn path(c: &Client) -> String {
    c.current_url().await.unwrap().path().to_string()
}

/// Waits (up to 15 s) until the browser is at `expected`: a click on a
/// submit button may return before the next page has loaded.
async fn at(c: &Client, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = path(c).await;
        if now == expected {
            // The new document is there; wait until its form is in it.
            find(c, Locator::Css("main")).await;
            return;
        }
        assert!(Instant::now() < deadline, "browser stayed at {now}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn browser_admin_enrollment_users_table_and_portal_registration() {
    if !(require_tool("chromium") && require_tool("chromedriver")) {
        return;
    }
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok_stdin(&["admin", "add", "root", "--password-stdin"], "correct horse battery\n");
    n.ok_stdin(&["user", "add", "carol", "--password-stdin"], "carol's long password\n");
    n.ok(&["user", "add", "dave"]);
    n.start();
    let driver = start_driver();
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path()).await;

    // Admin: password, then enrollment of the admin's own TOTP.
    c.goto(&n.url("/admin")).await.unwrap();
    at(&c, "/admin/login").await;
    shot(&c, "admin-login").await;
    fill(&c, "name", "root").await;
    fill(&c, "password", "correct horse battery").await;
    submit(&c).await;
    at(&c, "/admin/enroll").await;
    shot(&c, "admin-enroll").await;
    let secret = find(&c, Locator::Id("secret")).await.text().await.unwrap();
    fill(&c, "code", &totp_now(&secret, 0)).await;
    submit(&c).await;
    at(&c, "/admin/users").await;
    let body = c.source().await.unwrap();
    assert!(body.contains("carol") && body.contains("dave"));
    assert!(!body.contains(&secret));
    shot(&c, "admin-users").await;
    c.goto(&n.url("/admin/dashboard")).await.unwrap();
    at(&c, "/admin/dashboard").await;
    assert!(c.source().await.unwrap().contains("admin.totp_enroll"));
    shot(&c, "admin-dashboard").await;
    // The session cookie is HttpOnly: page script cannot read it.
    let cookies = c.execute("return document.cookie", vec![]).await.unwrap();
    assert_eq!(cookies, json!(""));
    find(&c, Locator::Css("header form button")).await.click().await.unwrap();
    at(&c, "/admin/login").await;

    // Portal: carol registers with her password, the QR code and a code.
    c.goto(&n.url("/")).await.unwrap();
    shot(&c, "portal-login").await;
    fill(&c, "username", "carol").await;
    fill(&c, "password", "carol's long password").await;
    submit(&c).await;
    at(&c, "/register").await;
    shot(&c, "portal-register").await;
    let secret = find(&c, Locator::Id("secret")).await.text().await.unwrap();
    let codes = c.find_all(Locator::Css("#backup-codes li")).await.unwrap();
    assert_eq!(codes.len(), 10);
    fill(&c, "code", &totp_now(&secret, 0)).await;
    submit(&c).await;
    at(&c, "/").await;
    let body = c.source().await.unwrap();
    assert!(body.contains("Your account") && !body.contains(&secret));
    shot(&c, "portal-home").await;
    c.close().await.unwrap();
    assert!(n.ok(&["user", "show", "carol"]).contains("active"));
    drop(driver);
    n.stop();
}
