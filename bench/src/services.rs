//! The processes under test: the broker, the database, and the four Vigil stages, each a
//! child process with its own log file; plus a minimal HTTP/1.1 client for their endpoints.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// A free loopback port (bound and released; fine for a benchmark on a quiet machine).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process the benchmark started and stops with SIGTERM.
pub struct Service {
    /// Name in tables and logs (`ingest`, `infer`, `store`, `dashboard`, `broker`).
    pub name: String,
    /// Its HTTP address, for stages.
    pub addr: Option<String>,
    child: Child,
}

impl Service {
    /// Starts `program args` in `dir` with stdout and stderr to `<dir>/<name>.log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        dir: &Path,
        addr: Option<String>,
    ) -> anyhow::Result<Service> {
        Self::spawn_with_env(name, program, args, &[], dir, addr)
    }

    /// [`Service::spawn`] with extra environment variables. A restarted service appends to
    /// the same log.
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        dir: &Path,
        addr: Option<String>,
    ) -> anyhow::Result<Service> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{name}.log")))?;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {name}: {}", program.display()))?;
        Ok(Service {
            name: name.to_owned(),
            addr,
            child,
        })
    }

    /// Its process id (while running).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until `GET /readyz` answers 200 (stages) or the port accepts (broker).
    pub async fn wait_ready(&mut self, timeout: Duration, http: bool) -> anyhow::Result<()> {
        self.wait_ready_at(timeout, http.then_some("/readyz")).await
    }

    /// Waits until `GET path` answers 200, or with no path until the port accepts.
    pub async fn wait_ready_at(
        &mut self,
        timeout: Duration,
        path: Option<&str>,
    ) -> anyhow::Result<()> {
        let addr = self.addr.clone().context("no address")?;
        self.wait_answer(&addr, timeout, path).await
    }

    /// As [`Service::wait_ready_at`] on another of the process's addresses (a process that
    /// serves several, as `vigil standalone` does).
    pub async fn wait_answer(
        &mut self,
        addr: &str,
        timeout: Duration,
        path: Option<&str>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited with {status} (see its log)", self.name);
            }
            let ready = if let Some(path) = path {
                matches!(get(addr, path).await, Ok((200, _)))
            } else {
                tokio::net::TcpStream::connect(addr).await.is_ok()
            };
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready on {addr} after {timeout:?} (see its log)",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// SIGKILL, as a crash or an OOM kill ends a process; waits for the exit.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then up to `grace` for a clean exit, then SIGKILL to it and every process
    /// it started (a pre-fork server's workers would outlive their master otherwise).
    pub async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            // std offers no SIGTERM without unsafe code; kill(1) sends it.
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
            eprintln!(
                "{} did not stop within {grace:?}: killing it and its children",
                self.name
            );
            // Listed before anything dies: an orphan is no longer linked to its parent.
            let tree: Vec<String> = crate::proc_stats::process_tree(pid)
                .iter()
                .map(u32::to_string)
                .collect();
            let _ = Command::new("kill").arg("-KILL").args(&tree).status().await;
        }
        let _ = self.child.kill().await;
    }
}

/// Issues one HTTP/1.1 request and returns the status and the body.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, Vec<(String, String)>, Vec<u8>)> {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
            .context("connect timeout")??;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .context("read timeout")??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("bad status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, headers, body))
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || raw.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[(eol + 4 + size).min(raw.len())..];
    }
    out
}

/// `GET path` → status and body as text.
pub async fn get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let (status, _, body) = request(addr, "GET", path, &[], &[]).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Runs the `mysql` client as root over the socket (how scripts/test sets up MariaDB).
pub fn mysql_root(sql: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("mysql")
        .args(["--protocol=socket", "-uroot", "-e", sql])
        .output()
        .context("run the mysql client (is MariaDB installed and running?)")?;
    if !out.status.success() {
        bail!(
            "mysql as root failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A fresh `vigil_bench_<run>` database with the test user of scripts/test; its URL.
pub fn create_database(run: &str) -> anyhow::Result<(String, String)> {
    let db = format!("vigil_bench_{run}");
    mysql_root(&format!(
        "CREATE USER IF NOT EXISTS 'vigil'@'127.0.0.1' IDENTIFIED BY 'vigil';
         GRANT ALL PRIVILEGES ON `vigil\\_%`.* TO 'vigil'@'127.0.0.1';
         FLUSH PRIVILEGES;
         CREATE DATABASE `{db}`;"
    ))?;
    Ok((
        db.clone(),
        format!("mysql://vigil:vigil@127.0.0.1:3306/{db}"),
    ))
}

/// Starts tansu on sqlite storage in `dir` (never its memory engine: docs/ARCHITECTURE.md "Real components in tests").
pub fn start_broker(tansu: &Path, dir: &Path, port: u16) -> anyhow::Result<Service> {
    let url = format!("tcp://127.0.0.1:{port}");
    Service::spawn(
        "broker",
        tansu,
        &[
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "sqlite://tansu.db",
        ],
        dir,
        Some(format!("127.0.0.1:{port}")),
    )
}

/// Default location of the tansu build scripts/test makes.
pub fn default_tansu() -> PathBuf {
    let cache = std::env::var_os("VIGIL_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vigil")))
        .unwrap_or_else(|| PathBuf::from(".cache/vigil"));
    cache.join("tansu-0.6.0/bin/tansu")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc_stats::has_exited;

    /// A master that ignores SIGTERM, as gunicorn waiting on its workers does, is killed
    /// with the process it started.
    #[tokio::test]
    async fn a_stop_past_its_grace_kills_the_children_too() {
        let dir = tempfile::tempdir().expect("temp dir");
        let service = Service::spawn(
            "master",
            Path::new("bash"),
            &["-c", "trap '' TERM; sleep 600 & echo $! > worker.pid; wait"],
            dir.path(),
            None,
        )
        .expect("start bash");
        let pid_file = dir.path().join("worker.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        let worker: u32 = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break pid;
            }
            assert!(Instant::now() < deadline, "the worker never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let master = service.pid().expect("running");
        assert!(!has_exited(worker), "the worker runs before the stop");
        service.stop(Duration::from_millis(300)).await;
        assert!(has_exited(master));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !has_exited(worker) {
            assert!(
                Instant::now() < deadline,
                "worker {worker} outlived its master"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
