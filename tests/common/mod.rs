//! Helpers shared by the binary's tests: a minimal HTTP/1.1 GET and stopping a child with
//! SIGTERM as an orchestrator would.

#![allow(dead_code)] // each test binary uses a subset

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// `GET path` on `addr`, optionally with a bearer token: (status, whole response).
pub fn http_get(addr: &str, path: &str, bearer: Option<&str>) -> (u16, String) {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    http(addr, "GET", path, &headers, "")
}

/// One HTTP/1.1 request with `headers` and `body`: (status, whole response).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
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

/// Sends SIGTERM and waits up to `within` for the exit.
pub fn terminate(child: &mut Child, within: Duration) -> ExitStatus {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A loopback port free right now (the child binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Polls `GET path` until it answers `want`.
pub fn wait_status(addr: &str, path: &str, want: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if TcpStream::connect(addr).is_ok() {
            let (status, body) = http_get(addr, path, None);
            if status == want {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{addr}{path} never answered {want}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
