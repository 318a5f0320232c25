//! Device directory scenarios, run on SQLite (always) and on a real MySQL/MariaDB server.
//!
//! The MySQL run needs `VIGIL_TEST_MYSQL=mysql://user[:pass]@host:port` (a server where the
//! user may create databases); each test creates `vigil_test_<random>` and drops it. Without
//! the variable the MySQL cases are skipped locally and fail when `CI` is set.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use uuid::Uuid;
use vigil_ingest::devices::{CachedDirectory, DirectoryError};
use vigil_ingest::{DeviceDirectory, DeviceToken, NewDevice, SqlDeviceDirectory};

fn mysql_server() -> Option<String> {
    match std::env::var("VIGIL_TEST_MYSQL") {
        Ok(url) if !url.is_empty() => Some(url.trim_end_matches('/').to_owned()),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI is set but VIGIL_TEST_MYSQL is not: the MySQL scenarios must run in CI")
        }
        _ => {
            eprintln!("skipped: set VIGIL_TEST_MYSQL=mysql://root@127.0.0.1:3306 to run on MySQL");
            None
        }
    }
}

/// A throw-away database on the MySQL server; dropped by [`MySqlDb::drop_db`].
struct MySqlDb {
    server: String,
    name: String,
}

impl MySqlDb {
    async fn create(server: &str) -> Self {
        let name = format!("vigil_test_{}", Uuid::new_v4().simple());
        let mut conn = sqlx::MySqlConnection::connect(server).await.expect("mysql");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        conn.close().await.expect("close");
        Self {
            server: server.to_owned(),
            name,
        }
    }

    fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    async fn drop_db(self) {
        let mut conn = sqlx::MySqlConnection::connect(&self.server)
            .await
            .expect("mysql");
        sqlx::query(&format!("DROP DATABASE {}", self.name))
            .execute(&mut conn)
            .await
            .expect("drop database");
        conn.close().await.expect("close");
    }
}

fn eeg_device(id: &str) -> NewDevice {
    NewDevice {
        device_id: id.into(),
        patient_id: "pat-7".into(),
        sample_rate_hz: Some(256.0),
        channels: Some(vec!["Fp1-F7".into(), "F7-T7".into()]),
    }
}

async fn scenarios(url: &str) {
    let directory = SqlDeviceDirectory::connect(url).await.expect("connect");
    // The schema is applied at every start: applying it again is harmless.
    directory.migrate().await.expect("migrate twice");

    let token = directory
        .register(&eeg_device("dev-a"))
        .await
        .expect("register");
    let device = directory
        .authenticate(&token.sha256())
        .await
        .expect("query")
        .expect("known token");
    assert_eq!(device.device_id, "dev-a");
    assert_eq!(device.patient_id, "pat-7");
    assert_eq!(device.sample_rate_hz, Some(256.0));
    assert_eq!(
        device.channels.as_deref(),
        Some(&["Fp1-F7".to_owned(), "F7-T7".to_owned()][..])
    );

    let bare = directory
        .register(&NewDevice {
            device_id: "dev-b".into(),
            patient_id: "pat-8".into(),
            sample_rate_hz: None,
            channels: None,
        })
        .await
        .expect("register without constraints");
    assert_ne!(bare, token);
    let b = directory
        .authenticate(&bare.sha256())
        .await
        .expect("query")
        .expect("known");
    assert_eq!((b.sample_rate_hz, b.channels), (None, None));

    let again = directory.register(&eeg_device("dev-a")).await;
    assert!(
        matches!(again, Err(DirectoryError::DeviceExists(ref id)) if id == "dev-a"),
        "{again:?}"
    );
    let bad = directory
        .register(&NewDevice {
            device_id: "has space".into(),
            ..eeg_device("x")
        })
        .await;
    assert!(matches!(bad, Err(DirectoryError::InvalidRegistration(_))));

    let stranger = DeviceToken::generate();
    assert_eq!(
        directory
            .authenticate(&stranger.sha256())
            .await
            .expect("query"),
        None
    );

    assert!(directory.revoke("dev-a").await.expect("revoke"));
    assert!(!directory.revoke("dev-a").await.expect("revoke twice"));
    assert!(!directory.revoke("no-such").await.expect("revoke unknown"));
    assert_eq!(
        directory
            .authenticate(&token.sha256())
            .await
            .expect("query"),
        None,
        "revoked"
    );
    assert!(
        directory
            .authenticate(&bare.sha256())
            .await
            .expect("query")
            .is_some(),
        "other devices unaffected"
    );

    // The stored hash is the SHA-256 of the token, never the token itself.
    directory.close().await;
}

async fn cache_scenario(url: &str) {
    let directory = Arc::new(SqlDeviceDirectory::connect(url).await.expect("connect"));
    let token = directory
        .register(&eeg_device("dev-c"))
        .await
        .expect("register");
    let cached = CachedDirectory::new(directory.clone(), Duration::from_millis(200), 16);
    assert!(cached.authenticate(&token).await.expect("query").is_some());
    directory.revoke("dev-c").await.expect("revoke");
    assert!(
        cached.authenticate(&token).await.expect("query").is_some(),
        "cached within the TTL"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        cached.authenticate(&token).await.expect("query").is_none(),
        "revocation effective after the TTL"
    );
    directory.close().await;
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("devices.db").display()
    )
}

#[tokio::test]
async fn sqlite_directory_registers_authenticates_and_revokes() {
    let dir = tempfile::tempdir().expect("tempdir");
    scenarios(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn sqlite_token_hash_is_stored_not_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(&dir);
    let directory = SqlDeviceDirectory::connect(&url).await.expect("connect");
    let token = directory
        .register(&eeg_device("dev-h"))
        .await
        .expect("register");
    directory.close().await;
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
    let (stored,): (String,) = sqlx::query_as("SELECT token_sha256 FROM devices")
        .fetch_one(&mut conn)
        .await
        .expect("row");
    assert_eq!(stored, token.sha256().as_str());
    assert!(!stored.contains(token.expose()));
}

#[tokio::test]
async fn sqlite_cache_hides_revocation_only_for_the_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    cache_scenario(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn unsupported_database_urls_are_refused() {
    let err = SqlDeviceDirectory::connect("postgres://x/y").await;
    assert!(matches!(err, Err(DirectoryError::BadUrl(_))));
}

#[tokio::test]
async fn mysql_directory_registers_authenticates_and_revokes() {
    let Some(server) = mysql_server() else { return };
    let db = MySqlDb::create(&server).await;
    scenarios(&db.url()).await;
    db.drop_db().await;
}

#[tokio::test]
async fn mysql_cache_hides_revocation_only_for_the_ttl() {
    let Some(server) = mysql_server() else { return };
    let db = MySqlDb::create(&server).await;
    cache_scenario(&db.url()).await;
    db.drop_db().await;
}
