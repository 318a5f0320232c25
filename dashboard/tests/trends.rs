//! qEEG trends in the dashboard: history pages and buckets from the clinical store (audited,
//! NaN as null), and live intervals pushed to the patient view only.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::*;
use vigil_core::bus::Topic;
use vigil_dashboard::directory::memory::MemoryClinicalStore;
use vigil_dashboard::Role;

async fn harness() -> (Harness, Arc<MemoryClinicalStore>) {
    let store = Arc::new(MemoryClinicalStore::default());
    let alice = store.add_user("alice", "alice-pw", Role::Clinician);
    store.assign(alice.id, "p1");
    (
        Harness::start(memory_bus(), store.clone(), test_config()).await,
        store,
    )
}

#[tokio::test]
async fn trend_history_pages_and_buckets_are_audited() {
    let (h, store) = harness().await;
    // 0-4 s evaluated, 4-6 s not evaluated, 6-8 s evaluated.
    store.add_trends(trends("p1", 0, 10.0, (5.0, 20.0), 10.0));
    store.add_trends(trends("p1", 1, 20.0, (3.0, 15.0), 30.0));
    store.add_trends(trends("p1", 2, f32::NAN, (f32::NAN, f32::NAN), f32::NAN));
    store.add_trends(trends("p1", 3, 4.0, (8.0, 9.0), 0.0));
    let (cookie, _) = h.login("alice", "alice-pw").await;
    let get = |path: String| authed_get(&cookie, path);
    let range = format!("from_ns={T0}&to_ns={}", T0 + 60_000_000_000);

    let (status, _, body) = h
        .http(get(format!(
            "/api/patients/p1/history/trends?{range}&limit=3"
        )))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["kind"], "trends");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[1]["start_ms"], (T0 + 2_000_000_000) as f64 / 1e6);
    assert!(items[2]["csa_db"][0][0].is_null(), "not evaluated is null");
    assert_eq!(items[0]["regions"][1], "right lateral");
    assert!(body["next_cursor"].is_string());

    // Buckets of 6 s: [0, 6) merges three intervals (one not evaluated), [6, 12) holds one.
    let (status, _, body) = h
        .http(get(format!(
            "/api/patients/p1/history/trends?{range}&limit=2&bucket_s=6"
        )))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let columns = body["items"].as_array().unwrap();
    assert_eq!(columns.len(), 2, "every page read, then merged: {body}");
    assert_eq!(body["next_cursor"], serde_json::Value::Null);
    assert_eq!(columns[0]["duration_ms"], 6000.0);
    assert_eq!(
        columns[0]["csa_db"][1][5], 15.0,
        "mean of the evaluated intervals"
    );
    assert_eq!(columns[0]["left"]["aeeg"], serde_json::json!([3.0, 20.0]));
    assert_eq!(columns[0]["left"]["bsr"], serde_json::json!([20.0]));
    assert_eq!(columns[1]["start_ms"], (T0 + 6_000_000_000) as f64 / 1e6);
    assert_eq!(columns[1]["csa_db"][0][0], 4.0);

    let (status, _, _) = h
        .http(get(format!(
            "/api/patients/p1/history/trends?{range}&bucket_s=1"
        )))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a bucket under one interval"
    );
    let (status, _, _) = h
        .http(get(format!("/api/patients/p2/history/trends?{range}")))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not assigned");
    let reads = store
        .audit_log()
        .iter()
        .filter(|a| a.action == "history_read" && a.detail.starts_with("trends"))
        .count();
    assert_eq!(reads, 2, "both successful trend reads are audited");
}

#[tokio::test]
async fn live_trends_reach_the_patient_view_only() {
    let (h, _) = harness().await;
    let (cookie, _) = h.login("alice", "alice-pw").await;
    let mut ward = h.connect("patients=p1", Some(&cookie)).await.unwrap();
    let mut patient = h
        .connect("patients=p1&traces=true", Some(&cookie))
        .await
        .unwrap();
    ward.snapshot().await;
    patient.snapshot().await;
    h.bus
        .publish_record(
            Topic::EegTrends,
            "p1",
            &trends("p1", 5, 12.5, (f32::NAN, 30.0), 50.0),
        )
        .await
        .unwrap();
    publish_hr(&h.bus, &hr_batch("p1", 0)).await;
    // Topics are not ordered with each other: take both updates, in whatever order.
    let got = [patient.next().await, patient.next().await];
    let live = got
        .iter()
        .find(|u| u["type"] == "trends")
        .expect("the patient view gets the interval");
    assert!(got.iter().any(|u| u["type"] == "hr"));
    assert_eq!(live["data"]["montage"], "double_banana");
    assert_eq!(live["data"]["csa_db"][0][0], 12.5);
    assert_eq!(
        live["data"]["right"]["aeeg"],
        serde_json::json!([null, 30.0])
    );
    publish_hr(&h.bus, &hr_batch("p1", 1)).await;
    for _ in 0..2 {
        assert_eq!(
            ward.next().await["type"],
            "hr",
            "the ward's tiles get no trends"
        );
    }
}
