//! 24 h of qEEG trends for one patient, as the patient view asks for them: one bucketed
//! history request (`/api/patients/{id}/history/trends?...&limit=5000&bucket_s=88`, what the
//! browser sends for the 24 h span on a 1,000 px canvas) through the dashboard's router, read
//! from the clinical database (43,200 stored 2 s intervals: 4 double-banana regions of 30 CSA
//! bins, asymmetry, aEEG and BSR per side). Reports the time per request and the response's
//! size; the targets are under 1 s and under 2 MB (issue 14).
//!
//! MariaDB needs `VIGIL_TEST_MYSQL=mysql://vigil:vigil@127.0.0.1:3306` (a fresh `vigil_*`
//! database is made and dropped); without it only SQLite runs. Run:
//! `VIGIL_TEST_MYSQL=mysql://vigil:vigil@127.0.0.1:3306 cargo bench -p vigil-dashboard --bench trends_history`

#![allow(missing_docs, clippy::unwrap_used)] // criterion_group! generates undocumented items

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use criterion::{criterion_group, criterion_main, Criterion};
use sqlx::Connection;
use tower::ServiceExt;
use uuid::Uuid;
use vigil_core::bus::Bus;
use vigil_core::config::{BusConfig, DashboardConfig};
use vigil_core::record::{EegTrends, MontageKind, SideTrends, TREND_BINS};
use vigil_dashboard::{app, DashboardState};
use vigil_storage::{Role, Store, WriteBatch};

const T0: i64 = 1_780_000_000_000_000_000;
const INTERVAL_NS: i64 = 2_000_000_000;
const DAY_INTERVALS: i64 = 24 * 3600 / 2;
/// What `VigilTrends.bucketSeconds(24, 1000)` gives: 982 columns for the day.
const BUCKET_S: u32 = 88;
const REGIONS: [&str; 4] = [
    "left lateral",
    "left parasagittal",
    "right parasagittal",
    "right lateral",
];

/// Interval `i`: values that vary from interval to interval and bin to bin, as real ones do
/// (constant values would compress and print shorter than real data).
fn interval(i: i64) -> EegTrends {
    let wave = |k: i64| ((i * 7919 + k * 104_729) % 1000) as f32 / 1000.0;
    let side = |k: i64| SideTrends {
        aeeg_min_uv: 4.0 + 6.0 * wave(k),
        aeeg_max_uv: 20.0 + 40.0 * wave(k + 1),
        bsr_percent: 100.0 * wave(k + 2) * wave(k + 3),
    };
    EegTrends {
        patient_id: "p1".into(),
        stream_id: Uuid::nil(),
        start_ns: T0 + i * INTERVAL_NS,
        duration_ns: INTERVAL_NS,
        montage: MontageKind::DoubleBanana,
        regions: REGIONS.iter().map(|r| (*r).to_owned()).collect(),
        csa_db: (0..REGIONS.len() as i64)
            .map(|r| {
                (0..TREND_BINS as i64)
                    .map(|b| 30.0 - b as f32 + 10.0 * wave(r * 31 + b))
                    .collect()
            })
            .collect(),
        asymmetry: (0..TREND_BINS as i64).map(|b| wave(b) - 0.5).collect(),
        asymmetry_index: wave(99) - 0.5,
        left: side(200),
        right: side(300),
        global: side(400),
        emitted_ns: T0 + (i + 1) * INTERVAL_NS,
    }
}

/// A store holding one clinician assigned to `p1` and a day of `p1`'s trends.
async fn day_of_trends(url: &str) -> Store {
    let store = Store::connect(url).await.unwrap();
    let alice = store
        .create_user("alice", "alice-password-1", Role::Clinician)
        .await
        .unwrap();
    store.assign(alice.id, "p1").await.unwrap();
    for first in (0..DAY_INTERVALS).step_by(2_000) {
        let trends = (first..(first + 2_000).min(DAY_INTERVALS))
            .map(interval)
            .collect();
        store
            .write_batch(&WriteBatch {
                trends,
                ..WriteBatch::default()
            })
            .await
            .unwrap();
    }
    store
}

/// The dashboard on `store`, and a logged-in session's cookie.
async fn dashboard(store: Store) -> (axum::Router, String) {
    let bus = Bus::connect(&BusConfig {
        url: format!("memory://{}", Uuid::new_v4()),
        ..BusConfig::default()
    })
    .await
    .unwrap();
    bus.create_vigil_topics().await.unwrap();
    let config = DashboardConfig {
        session_key: "bench-session-key-0123456789abcdef-0123".to_owned(),
        ..DashboardConfig::default()
    };
    let router = app(DashboardState::new(bus, Arc::new(store), &config));
    let login = Request::post("/api/login")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"username":"alice","password":"alice-password-1"}"#,
        ))
        .unwrap();
    let response = router.clone().oneshot(login).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (router, cookie)
}

/// One 24 h request; returns the body's length and the number of columns.
async fn request_day(router: &axum::Router, cookie: &str) -> (usize, usize) {
    let uri = format!(
        "/api/patients/p1/history/trends?from_ns={T0}&to_ns={}&limit=5000&bucket_s={BUCKET_S}",
        T0 + DAY_INTERVALS * INTERVAL_NS
    );
    let request = Request::get(uri)
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    (body.len(), json["items"].as_array().unwrap().len())
}

fn bench_backend(c: &mut Criterion, name: &str, url: &str, rt: &tokio::runtime::Runtime) {
    let (router, cookie) = rt.block_on(async { dashboard(day_of_trends(url).await).await });
    let (bytes, columns) = rt.block_on(request_day(&router, &cookie));
    println!(
        "trends_history/{name}: 24 h = {DAY_INTERVALS} intervals -> {columns} columns of {BUCKET_S} s, \
         {bytes} bytes ({:.2} MB)",
        bytes as f64 / 1e6
    );
    let mut group = c.benchmark_group(format!("trends_history/{name}"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("24h_bucketed", |b| {
        b.iter(|| rt.block_on(request_day(&router, &cookie)));
    });
    group.finish();
}

fn trends_history(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    bench_backend(c, "sqlite", &sqlite, &rt);
    match std::env::var("VIGIL_TEST_MYSQL") {
        Ok(server) if !server.is_empty() => {
            let server = server.trim_end_matches('/').to_owned();
            let name = format!("vigil_bench_{}", Uuid::new_v4().simple());
            let mut conn = rt
                .block_on(sqlx::MySqlConnection::connect(&server))
                .unwrap();
            rt.block_on(sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn))
                .unwrap();
            bench_backend(c, "mariadb", &format!("{server}/{name}"), &rt);
            rt.block_on(sqlx::query(&format!("DROP DATABASE {name}")).execute(&mut conn))
                .unwrap();
        }
        _ => eprintln!(
            "trends_history: set VIGIL_TEST_MYSQL=mysql://vigil:vigil@127.0.0.1:3306 for MariaDB"
        ),
    }
}

criterion_group!(benches, trends_history);
criterion_main!(benches);
