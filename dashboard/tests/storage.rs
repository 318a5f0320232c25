//! The dashboard on the real clinical database: `vigil_storage::Store` on SQLite, and on
//! MariaDB when `VIGIL_TEST_MYSQL` is set (required under CI). Real sockets on port 0, the
//! memory:// bus: argon2 logins, assignment checks on the WebSocket, live updates, the
//! acknowledgement and its audit row, history read from the store and audited.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use sqlx::Connection;
use uuid::Uuid;
use vigil_core::bus::Topic;
use vigil_core::record::AlertKind;
use vigil_storage::{Role, Store, WriteBatch};

async fn scenario(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let alice = store
        .create_user("alice", "alice-password-1", Role::Clinician)
        .await
        .unwrap();
    store
        .create_user("rita", "rita-password-1", Role::Researcher)
        .await
        .unwrap();
    store.assign(alice.id, "p1").await.unwrap();
    let store = Arc::new(store);
    let h = Harness::start(memory_bus(), store.clone(), test_config()).await;

    // argon2 checked by the store.
    let (status, _, _) = h
        .http(
            Request::post("/api/login")
                .header("content-type", "application/json")
                .body(Body::from(
                    r#"{"username":"alice","password":"not-her-password"}"#,
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (cookie, csrf) = h.login("alice", "alice-password-1").await;

    // Unassigned patient: 403, for researchers too (the store would let them read it
    // through the history API; the dashboard shows assigned patients only).
    assert_eq!(
        h.connect("patients=p2", Some(&cookie))
            .await
            .err()
            .unwrap()
            .0,
        403
    );
    let (rita, _) = h.login("rita", "rita-password-1").await;
    assert_eq!(
        h.connect("patients=p1", Some(&rita)).await.err().unwrap().0,
        403
    );

    // Live updates.
    let mut client = h.connect("patients=p1", Some(&cookie)).await.unwrap();
    client.snapshot().await;
    publish_hr(&h.bus, &hr_batch("p1", 0)).await;
    assert_eq!(client.next().await["type"], "hr");

    // Acknowledgement: published and audited in the store.
    let event = raised("p1", AlertKind::Seizure);
    h.bus
        .publish_record(Topic::Alerts, "p1", &event)
        .await
        .unwrap();
    assert_eq!(client.next().await["data"]["transition"], "raised");
    let (status, _, body) = h
        .http(
            Request::post(format!("/api/patients/p1/alerts/{}/ack", event.alert_id))
                .header("cookie", cookie.as_str())
                .header("x-csrf-token", csrf.as_str())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let live = client.next().await;
    assert_eq!(live["data"]["transition"], "acknowledged");
    assert_eq!(live["data"]["by"], "alice");

    // History from the store.
    store
        .write_batch(&WriteBatch {
            probabilities: vec![probability("p1", T0, vec![0.3, f32::NAN, 0.7])],
            hr: vec![hr_batch("p1", 1)],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    let range = format!("from_ns={}&to_ns={}", T0 - 1, T0 + 100_000_000_000);
    let get = |kind: &str| {
        Request::get(format!("/api/patients/p1/history/{kind}?{range}"))
            .header("cookie", cookie.as_str())
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, body) = h.http(get("prob")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"][0]["p"], serde_json::json!([0.3, null, 0.7]));
    let (_, _, body) = h.http(get("hr")).await;
    assert_eq!(body["items"][0][1], 61.0);

    let audit = store.audit_log(Some("p1")).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    for action in ["live_view", "acknowledge_alert", "history_read"] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    assert!(audit.iter().all(|a| a.user_id == alice.id));
    assert!(store.audit_log(Some("p2")).await.unwrap().is_empty());
    client.close().await;
}

#[tokio::test]
async fn dashboard_on_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("vigil.db").display()
    );
    scenario(&url).await;
}

#[tokio::test]
async fn dashboard_on_mariadb_store() {
    let server = match std::env::var("VIGIL_TEST_MYSQL") {
        Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
        _ if std::env::var_os("CI").is_some() => panic!("CI needs VIGIL_TEST_MYSQL"),
        _ => {
            eprintln!("skipped: set VIGIL_TEST_MYSQL=mysql://vigil:vigil@127.0.0.1:3306");
            return;
        }
    };
    let name = format!("vigil_{}", Uuid::new_v4().simple());
    let mut conn = sqlx::MySqlConnection::connect(&server).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    scenario(&format!("{server}/{name}")).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}
