//! Issue 15, the CLI's part of "the first hour": output into a pipe closed
//! early, `serve --http-listen/--radius-listen`, unknown `TESSERA_*`
//! variables, `backup restore` onto a node just made by `init`, and the
//! data directory's mode after `init`.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::support::{TestNode, chmod, mode};

const PASSPHRASE: &str = "a long backup passphrase";
const RADIUS_SECRET: &str = "radius-test-secret";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A port nothing listens on right now (the test binds it a moment later).
fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Item 1: `tessera user list | head -1` printed "failed printing to
/// stdout: Broken pipe" and a backtrace.
#[test]
fn regression_listing_into_a_pipe_closed_early_exits_quietly() {
    let n = TestNode::new();
    n.ok(&["init"]);
    // 4000 users: each listing is some 240 KB, far beyond a pipe's 64 KiB
    // buffer, so the command is still writing when the reader goes away.
    let mut jsonl = String::from("{\"format\":\"tessera-users\",\"version\":1,\"secrets\":false}\n");
    for i in 0..4000 {
        jsonl.push_str(&format!(
            "{{\"realm\":\"default\",\"username\":\"piped-user-{i}\",\"disabled\":false,\"groups\":[],\"tokens\":[]}}\n"
        ));
    }
    let file = n.cwd().join("many.jsonl");
    std::fs::write(&file, jsonl).unwrap();
    n.ok(&["import", "users", s(&file)]);
    for args in [
        &["user", "list", "--limit", "10000"][..],
        &["user", "list", "--limit", "10000", "--json"],
        &["audit", "list", "--limit", "10000"],
    ] {
        let mut child = n.cli(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        assert!(!first.trim().is_empty(), "{args:?}: no first line");
        drop(stdout); // `head -1` exits
        let out = child.wait_with_output().unwrap();
        let err = stderr_of(&out);
        for text in ["panicked", "Broken pipe", "backtrace", "failed printing"] {
            assert!(!err.contains(text), "{args:?}: {err}");
        }
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

/// `tessera serve | head -1` (a script waiting for the first `listening`
/// line): the reader goes away, the server does not.
#[test]
fn a_server_whose_stdout_reader_left_keeps_serving() {
    let n = TestNode::new();
    n.ok(&["init"]);
    let mut child = n
        .cli(&["serve", "--http-listen", "127.0.0.1:0", "--radius-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("listening "), "{first}");
    drop(stdout);
    std::thread::sleep(Duration::from_secs(2));
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(alive, "the server died with its reader: {}", stderr_of(&out));
    assert!(!stderr_of(&out).contains("panicked"), "{}", stderr_of(&out));
}

/// Item 9: the listen addresses from `serve`'s own flags, over the
/// harness's `TESSERA_HTTP_LISTEN`/`TESSERA_RADIUS_LISTEN` (flags win).
/// Also item 10 for `serve`: a wrapper's `TESSERA_BIN` does not stop it.
#[tokio::test]
async fn serve_listens_where_its_flags_say() {
    use tessera_radius::{Code, Packet};
    let mut n = TestNode::new();
    let help = n.ok(&["serve", "--help"]);
    for named in ["--http-listen", "--radius-listen", "TESSERA_HTTP_LISTEN", "[http] listen", "TESSERA_RADIUS_LISTEN"] {
        assert!(help.contains(named), "serve --help does not name {named}:\n{help}");
    }
    assert!(help.contains("[radius] listen") && help.contains("127.0.0.1:8443"), "{help}");
    let bad = n.fail(&["serve", "--http-listen", "localhost"], &[], 2);
    assert!(bad.contains("--http-listen"), "{bad}");

    n.ok(&["init"]);
    let secret_file = n.cwd().join("radius.secret");
    std::fs::write(&secret_file, format!("{RADIUS_SECRET}\n")).unwrap();
    n.ok(&["client", "add", "loopback", "--address", "127.0.0.1", "--secret-file", s(&secret_file)]);
    let https = [free_tcp_port(), free_tcp_port()];
    let radius = free_udp_port();
    let http_flag = format!("127.0.0.1:{},127.0.0.1:{}", https[0], https[1]);
    let radius_flag = format!("127.0.0.1:{radius}");
    n.start_serve(
        &[],
        &["--http-listen", &http_flag, "--radius-listen", &radius_flag],
        &[("TESSERA_BIN", "/opt/wrapper/bin/tessera")],
    );
    assert!(https.contains(&n.https_port()), "serving on {}, asked for {https:?}", n.https_port());
    for port in https {
        let r = n.client().get(format!("https://127.0.0.1:{port}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200, "port {port}");
    }
    assert_eq!(n.listening("radius"), radius_flag);
    let request = Packet::new(Code::StatusServer, 7, [9u8; 16]).encode_request(RADIUS_SECRET.as_bytes(), true).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    sock.send_to(&request, &radius_flag).unwrap();
    let mut buf = [0u8; 4096];
    let (len, _) = sock.recv_from(&mut buf).expect("Status-Server answered on the --radius-listen port");
    assert_eq!(Packet::decode(&buf[..len]).unwrap().code, Code::AccessAccept);
    n.stop();
}

/// Item 10: `TESSERA_BIN` (a wrapper script's) made every command fail
/// with "not a known setting"; now a warning, once, with a suggestion for
/// a near miss, and nothing about the variables tessera reads itself.
#[test]
fn regression_unknown_tessera_variable_warns_once_and_the_command_runs() {
    let n = TestNode::new();
    n.ok(&["init"]);
    let out = n
        .cli(&["user", "add", "alice"])
        .env("TESSERA_BIN", "/opt/wrapper/bin/tessera")
        .env("TESSERA_HTTP_LISTN", "0.0.0.0:9443")
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("TESSERA_BIN").count(), 1, "warned once: {err}");
    assert!(err.contains("warning: environment variable TESSERA_BIN is not a known setting; ignored\n"), "{err}");
    assert!(
        err.contains(
            "warning: environment variable TESSERA_HTTP_LISTN is not a known setting; ignored (did you mean \
             TESSERA_HTTP_LISTEN?)"
        ),
        "{err}"
    );
    assert!(n.ok(&["user", "show", "alice"]).contains("alice"));

    // Variables tessera reads itself are no unknown settings (the harness
    // sets TESSERA_LOG for every command).
    let key = std::fs::read_to_string(n.key_file()).unwrap();
    let out = n.cli(&["user", "show", "alice"]).env("TESSERA_MASTER_KEY", key.trim()).output().unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success() && !err.contains("warning"), "{err}");
}

/// Item 12: `backup restore` onto a node just made by `init` was refused
/// ("already holds a database"); a differing ./tessera.toml was refused
/// without saying which file or what to do.
#[test]
fn regression_restore_onto_a_node_just_initialised() {
    let src = TestNode::new();
    let src_config = "[audit]\nretention_days = 400\n";
    std::fs::write(src.cwd().join("tessera.toml"), src_config).unwrap();
    src.ok(&["init"]);
    src.ok(&["user", "add", "alice"]);
    let mut serving = src.sibling();
    serving.start(); // its certificate, for the backup
    serving.stop();
    let backup = src.cwd().join("nightly.age");
    // The passphrase variable is read by this command: no warning about it.
    let out = src
        .cli(&["backup", "create", "--out", s(&backup), "--passphrase-env", "TESSERA_BACKUP_PASSPHRASE"])
        .env("TESSERA_BACKUP_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success() && !err.contains("not a known setting"), "{err}");
    let pass = src.cwd().join("pass");
    std::fs::write(&pass, format!("{PASSPHRASE}\n")).unwrap();
    let restore = ["backup", "restore", s(&backup), "--passphrase-file", s(&pass)];

    // `init` first, with the key kept apart from backups, as on a new node.
    let fresh = TestNode::new();
    std::fs::copy(src.key_file(), fresh.key_file()).unwrap();
    assert!(fresh.ok(&["init"]).contains("(existing)"));
    let out = fresh.ok(&restore);
    assert!(out.contains("moved aside") && out.contains("tessera.db.before-restore-"), "{out}");
    assert!(fresh.ok(&["user", "list"]).contains("alice"));
    assert_eq!(std::fs::read_to_string(fresh.data().join("tessera.toml.restored")).unwrap(), src_config);
    // Holding data now: refused without --force, saying what it holds.
    let out = fresh.fail(&restore, &[], 1);
    assert!(out.contains("already holds a database with data (1 user") && out.contains("--force"), "{out}");

    // `init`, one `serve` (its own certificate), and its own ./tessera.toml.
    let mut other = TestNode::new();
    std::fs::copy(src.key_file(), other.key_file()).unwrap();
    let own_config = "[audit]\nretention_days = 30\n";
    std::fs::write(other.cwd().join("tessera.toml"), own_config).unwrap();
    other.ok(&["init"]);
    other.start();
    other.stop();
    let before = std::fs::read(other.data().join("tls/cert.pem")).unwrap();
    let out = other.fail(&restore, &[], 1);
    assert!(
        out.contains(
            "the configuration file tessera.toml (read by default from the working directory) differs from the \
             backup's configuration"
        ) && out.contains("--force: tessera.toml is moved aside")
            && out.contains("diff tessera.toml -")
            && out.contains("nothing was restored"),
        "{out}"
    );
    assert!(!out.contains("cert.pem"), "a generated certificate on an empty node is no conflict: {out}");
    let config_path = other.cwd().join("tessera.toml");
    let mut named = vec!["--config", s(&config_path)];
    named.extend(restore);
    let out = other.fail(&named, &[], 1);
    assert!(out.contains("(named by --config or TESSERA_CONFIG)"), "{out}");
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), own_config, "nothing changed");
    assert_eq!(std::fs::read(other.data().join("tls/cert.pem")).unwrap(), before, "nothing changed");

    let mut forced = restore.to_vec();
    forced.push("--force");
    let out = other.ok(&forced);
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), src_config);
    let kept: Vec<String> = std::fs::read_dir(other.cwd())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("tessera.toml.before-restore-"))
        .collect();
    assert_eq!(kept.len(), 1, "{out}");
    assert_eq!(std::fs::read_to_string(other.cwd().join(&kept[0])).unwrap(), own_config);
    assert_eq!(
        std::fs::read(other.data().join("tls/cert.pem")).unwrap(),
        std::fs::read(src.data().join("tls/cert.pem")).unwrap(),
        "{out}"
    );
    assert!(other.ok(&["user", "list"]).contains("alice"));
}

/// Item 16: `init` on an existing 0755 directory left it 0755, although
/// the README says the data directory is 0700.
#[test]
fn regression_init_makes_an_existing_data_directory_private() {
    let n = TestNode::new();
    std::fs::create_dir(n.data()).unwrap();
    chmod(&n.data(), 0o755);
    let out = n.ok(&["init"]);
    assert_eq!(mode(&n.data()), 0o700);
    assert!(out.contains("mode changed from 0755 to 0700"), "{out}");
    // Later commands leave the mode to the administrator.
    chmod(&n.data(), 0o750);
    n.ok(&["user", "add", "alice"]);
    assert_eq!(mode(&n.data()), 0o750);

    let m = TestNode::new();
    let out = m.ok(&["init"]);
    assert_eq!(mode(&m.data()), 0o700);
    assert!(!out.contains("mode changed"), "a directory init creates is 0700 without a word: {out}");
}
