//! The rig's database: a fresh database on the machine's MariaDB, or a MariaDB server of the
//! rig's own that a scenario may stop and start.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::services;

/// Where the rig's database lives.
pub enum Database {
    /// A fresh `vigil_bench_<run>` database on the machine's MariaDB (scripts/test's user).
    Shared {
        /// Database name.
        name: String,
    },
    /// A MariaDB server of the rig's own, in its work dir, which a scenario may stop.
    Private(PrivateMariaDb),
}

impl Database {
    fn port(&self) -> u16 {
        match self {
            Database::Shared { .. } => 3306,
            Database::Private(db) => db.port,
        }
    }

    fn name(&self) -> &str {
        match self {
            Database::Shared { name } => name,
            Database::Private(_) => PrivateMariaDb::DATABASE,
        }
    }

    /// The URL Vigil's stages use.
    pub fn url(&self) -> String {
        format!(
            "mysql://vigil:vigil@127.0.0.1:{}/{}",
            self.port(),
            self.name()
        )
    }

    /// Runs `sql` with the `mysql` client as the test user; the rows, tab-separated.
    pub async fn query(&self, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
        mysql(self.port(), Some(self.name()), sql).await
    }
}

/// Runs `sql` with the `mysql` client as `vigil` over TCP on `port`; the rows, tab-separated.
async fn mysql(port: u16, database: Option<&str>, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let out = Command::new("mysql")
        .args([
            "--protocol=tcp",
            "-h127.0.0.1",
            "-uvigil",
            "-pvigil",
            "-N",
            "-B",
        ])
        .arg(format!("-P{port}"))
        .args(["-e", sql])
        .args(database)
        .output()
        .await
        .context("run the mysql client")?;
    if !out.status.success() {
        bail!("mysql: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect())
}

/// A MariaDB server started from an empty data directory, with grant tables skipped (loopback
/// only, a test instance): any user may connect, as `vigil`/`vigil` does.
pub struct PrivateMariaDb {
    dir: PathBuf,
    port: u16,
    server: Option<Child>,
    starts: u32,
}

impl PrivateMariaDb {
    /// The one database the rig uses on it.
    const DATABASE: &'static str = "vigil_faults";

    /// Initialises a data directory in `dir`, starts the server and creates the database.
    pub async fn start_new(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let install = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args(["--user=root", "--auth-root-authentication-method=normal"])
            .arg("--skip-test-db")
            .output()
            .await
            .context("run mariadb-install-db (is mariadb-server installed?)")?;
        ensure!(
            install.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&install.stderr)
        );
        let mut db = Self {
            dir: dir.to_owned(),
            port: services::free_port()?,
            server: None,
            starts: 0,
        };
        db.start().await?;
        mysql(
            db.port,
            None,
            &format!("CREATE DATABASE {}", Self::DATABASE),
        )
        .await?;
        Ok(db)
    }

    /// Starts the server on its data directory and waits until it accepts connections.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("mariadbd-{}.log", self.starts)))?;
        let d = |name: &str| self.dir.join(name).display().to_string();
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", d("data")))
            .arg(format!("--socket={}", d("mysqld.sock")))
            .arg(format!("--pid-file={}", d("mysqld.pid")))
            .arg(format!("--port={}", self.port))
            .args(["--bind-address=127.0.0.1", "--skip-grant-tables"])
            .args(["--user=root", "--skip-log-bin"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("start mariadbd")?;
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            ensure!(Instant::now() < deadline, "mariadbd did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Stops the server cleanly (SIGTERM) and waits for it to exit.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.server.take() {
            signal(&child, "TERM").await;
            tokio::time::timeout(Duration::from_secs(60), child.wait())
                .await
                .context("mariadbd did not stop within 60 s")??;
        }
        Ok(())
    }
}

async fn signal(child: &Child, name: &str) {
    if let Some(pid) = child.id() {
        // std offers no signals without unsafe code; kill(1) sends them.
        let _ = Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .await;
    }
}
