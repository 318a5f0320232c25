//! The `vigil` binary as a user runs it: configuration layers, clear errors, and `demo`
//! serving its endpoints then stopping cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn vigil() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd.env_remove("VIGIL_CONFIG");
    cmd
}

#[test]
fn config_shows_env_override_over_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("vigil.toml");
    std::fs::write(
        &file,
        "[bus]\npartitions = 6\ntopic_prefix = \"from-file.\"\n",
    )
    .expect("write");
    let out = vigil()
        .arg("--config")
        .arg(&file)
        .arg("config")
        .env("VIGIL__BUS__TOPIC_PREFIX", "from-env.")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("partitions = 6"), "{text}");
    assert!(text.contains("topic_prefix = \"from-env.\""), "{text}");
}

#[test]
fn unknown_config_key_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("vigil.toml");
    std::fs::write(&file, "[bus]\nparitions = 6\n").expect("write");
    let out = vigil()
        .arg("--config")
        .arg(&file)
        .arg("config")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("paritions"), "{err}");
}

#[test]
fn verify_without_fetched_model_says_how_to_fix_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = vigil()
        .args(["models", "verify"])
        .env("VIGIL__MODELS__DIR", dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run `vigil models fetch`"), "{err}");
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    (status, response)
}

#[test]
fn demo_serves_ops_endpoints_and_stops_on_sigterm() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut child = vigil()
        .arg("demo")
        .env("VIGIL__DEMO__LISTEN", "127.0.0.1:0")
        .env("VIGIL__MODELS__DIR", &models)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(300);
    let addr = loop {
        assert!(Instant::now() < deadline, "demo did not print its address");
        let line = lines.next().expect("demo output").expect("line");
        if let Some(rest) = line.strip_prefix("Vigil demo on http://") {
            break rest.split_whitespace().next().expect("addr").to_owned();
        }
    };
    let (status, body) = http_get(&addr, "/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(&addr, "/readyz");
    assert_eq!(status, 200, "model and bus checks pass: {body}");
    assert!(
        body.contains("\"model\"") && body.contains("\"bus\""),
        "{body}"
    );
    let (status, _) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "demo did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "clean exit after SIGTERM: {status}");
}
