//! The dashboard server over real sockets (port 0) and the memory:// bus (one fan-out test
//! also on a real Kafka-protocol broker, `VIGIL_TEST_KAFKA`), with the in-memory clinical
//! store. `tests/storage.rs` runs the same server on the real `vigil_storage::Store`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;
use vigil_core::bus::{Bus, Topic};
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::config::BusConfig;
use vigil_core::record::{AlertEvent, AlertKind, AlertTransition, ProvisionalProbability};
use vigil_dashboard::directory::memory::MemoryClinicalStore;
use vigil_dashboard::directory::HrSample;
use vigil_dashboard::Role;

fn ward_store() -> Arc<MemoryClinicalStore> {
    let store = Arc::new(MemoryClinicalStore::default());
    let alice = store.add_user("alice", "alice-pw", Role::Clinician);
    let bob = store.add_user("bob", "bob-pw", Role::Clinician);
    let rita = store.add_user("rita", "rita-pw", Role::Researcher);
    store.assign(alice.id, "p1");
    store.assign(alice.id, "p2");
    store.assign(bob.id, "p3");
    store.assign(rita.id, "p1");
    store
}

async fn harness(bus: BusConfig) -> (Harness, Arc<MemoryClinicalStore>) {
    let store = ward_store();
    (
        Harness::start(bus, store.clone(), test_config()).await,
        store,
    )
}

#[tokio::test]
async fn websocket_without_session_gets_401_problem() {
    let (h, _) = harness(memory_bus()).await;
    let (status, body) = h.connect("patients=p1", None).await.err().unwrap();
    assert_eq!(status, 401);
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["status"], 401);
    let forged = "vigil_session=v1.1.99999999999.00.AAAA";
    let (status, _) = h.connect("patients=p1", Some(forged)).await.err().unwrap();
    assert_eq!(status, 401, "forged cookie");
}

#[tokio::test]
async fn websocket_refuses_unassigned_patients_with_403_problem() {
    let (h, store) = harness(memory_bus()).await;
    let (cookie, _) = h.login("alice", "alice-pw").await;
    for query in ["patients=p3", "patients=p1,p3"] {
        let (status, body) = h.connect(query, Some(&cookie)).await.err().unwrap();
        assert_eq!(status, 403, "{query}");
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains("p3"),
            "{problem}"
        );
    }
    assert!(
        store.audit_log().iter().all(|a| a.patient_id != "p3"),
        "nothing of p3 was read"
    );
    let (status, _) = h
        .connect("patients=p1&traces=true", Some(&cookie))
        .await
        .err()
        .map_or((101, String::new()), |e| e);
    assert_eq!(status, 101, "assigned patient is fine");
    let audit = store.audit_log();
    assert!(
        audit
            .iter()
            .any(|a| a.patient_id == "p1" && a.action == "live_view"),
        "{audit:?}"
    );
    // A page of another site cannot open the socket with the clinician's cookie.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            h.live_url("patients=p1"),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("cross-origin socket accepted: {:?}", other.map(|_| ())),
    }
}

/// Provisional lower bounds share the probability topic; the browser gets them as their own
/// update type, so it can never draw one as a final value.
#[tokio::test]
async fn provisional_probabilities_reach_the_browser_marked_as_such() {
    let (h, _) = harness(memory_bus()).await;
    let (cookie, _) = h.login("alice", "alice-pw").await;
    let final_p = probability("p1", T0, vec![0.1, 0.2]);
    let provisional = ProvisionalProbability {
        patient_id: "p1".into(),
        start_ns: T0 + 1_000_000_000,
        step_ns: 500_000_000,
        aggregate_p: vec![0.75, f32::NAN, 0.5],
        model: final_p.model.clone(),
        emitted_ns: T0 + 2_000_000_000,
    };
    h.bus
        .publish_record(Topic::EegProb, "p1", &final_p)
        .await
        .unwrap();
    h.bus
        .publish_record(Topic::EegProb, "p1", &provisional)
        .await
        .unwrap();
    h.wait_for_seq("p1", 2).await;
    let mut client = h.connect("patients=p1", Some(&cookie)).await.unwrap();
    let (_, items) = client.snapshot().await;
    let kinds: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["prob", "prob_provisional"]);
    assert_eq!(items[0]["data"]["p"], serde_json::json!([0.1, 0.2]));
    assert_eq!(
        items[1]["data"]["p"],
        serde_json::json!([0.75, null, 0.5]),
        "not evaluated yet travels as null"
    );
    assert_eq!(
        items[1]["data"]["start_ms"].as_f64(),
        Some((T0 + 1_000_000_000) as f64 / 1e6)
    );
}

#[tokio::test]
async fn subscriber_gets_snapshot_then_every_live_update_once() {
    let (h, _) = harness(memory_bus()).await;
    let (cookie, _) = h.login("alice", "alice-pw").await;
    h.bus
        .publish_record(
            Topic::EegProb,
            "p1",
            &probability("p1", T0, vec![0.1, f32::NAN, 0.9]),
        )
        .await
        .unwrap();
    publish_hr(&h.bus, &hr_batch("p1", 0)).await;
    publish_hr(&h.bus, &hr_batch("p2", 0)).await;
    h.wait_for_seq("p1", 2).await;
    h.wait_for_seq("p2", 1).await;

    let mut client = h.connect("patients=p1,p2", Some(&cookie)).await.unwrap();
    let (begin, items) = client.snapshot().await;
    assert_eq!(begin["patient_id"], "p1");
    assert_eq!(begin["resumed"], false);
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["type"], "prob");
    assert_eq!(items[0]["seq"], 1);
    assert_eq!(
        items[0]["data"]["p"],
        serde_json::json!([0.1, null, 0.9]),
        "NaN travels as null (not evaluated)"
    );
    assert_eq!(items[0]["data"]["step_ms"], 500.0);
    assert_eq!(items[1]["type"], "hr");
    assert_eq!(items[1]["data"]["points"][0][1], 60.0);
    let (begin2, items2) = client.snapshot().await;
    assert_eq!(begin2["patient_id"], "p2");
    assert_eq!(items2.len(), 1);

    // Traces are only sent to subscribers that asked for them.
    h.bus
        .publish_record(Topic::EegTrace, "p1", &trace("p1", 2, 256, 0))
        .await
        .unwrap();
    publish_hr(&h.bus, &hr_batch("p1", 1)).await;
    let live = client.next().await;
    assert_eq!(
        (live["type"].as_str(), live["seq"].as_u64()),
        (Some("hr"), Some(4))
    );

    let mut tracing_client = h
        .connect("patients=p1&traces=true", Some(&cookie))
        .await
        .unwrap();
    let (_, items) = tracing_client.snapshot().await;
    let kinds: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["prob", "hr", "trace", "hr"]);
    assert_eq!(
        items[2]["data"]["channels"],
        serde_json::json!(["ch0", "ch1"])
    );
    assert_eq!(
        items[2]["data"]["samples"][0].as_array().unwrap().len(),
        256
    );

    // The browser sends nothing the server acts on; a stray frame changes nothing.
    send_text(&mut tracing_client, "hello").await;
    publish_hr(&h.bus, &hr_batch("p1", 2)).await;
    assert_eq!(tracing_client.next().await["seq"], 5);
    assert_eq!(client.next().await["seq"], 5);
}

/// Both clients get the same updates in the same order.
async fn fan_out_to_two_clients(bus: BusConfig) {
    let (h, _) = harness(bus).await;
    let (cookie, _) = h.login("alice", "alice-pw").await;
    let mut a = h.connect("patients=p1", Some(&cookie)).await.unwrap();
    let mut b = h.connect("patients=p1", Some(&cookie)).await.unwrap();
    a.snapshot().await;
    b.snapshot().await;
    for i in 0..20 {
        publish_hr(&h.bus, &hr_batch("p1", i)).await;
    }
    for client in [&mut a, &mut b] {
        let mut bpm = Vec::new();
        for seq in 1..=20u64 {
            let update = client.next().await;
            assert_eq!(update["seq"], seq);
            bpm.push(update["data"]["points"][0][1].as_f64().unwrap());
        }
        let expected: Vec<f64> = (0..20).map(|i| 60.0 + f64::from(i)).collect();
        assert_eq!(bpm, expected);
    }
}

#[tokio::test]
async fn fan_out_to_two_clients_on_memory_bus() {
    fan_out_to_two_clients(memory_bus()).await;
}

#[tokio::test]
async fn fan_out_to_two_clients_on_kafka() {
    if let Some(bus) = kafka_bus() {
        fan_out_to_two_clients(bus).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_disconnected_and_others_keep_receiving() {
    let store = ward_store();
    let mut config = test_config();
    config.client_queue_len = 8;
    config.send_timeout_ms = 60_000; // only the queue decides here
    let h = Harness::start(memory_bus(), store, config).await;
    let (cookie, _) = h.login("alice", "alice-pw").await;
    let mut fast = h
        .connect("patients=p1&traces=true", Some(&cookie))
        .await
        .unwrap();
    let mut slow = h
        .connect("patients=p1&traces=true", Some(&cookie))
        .await
        .unwrap();
    fast.snapshot().await;
    slow.snapshot().await;
    assert_eq!(h.state.hub().subscriber_count("p1"), 2);

    // The fast client reads everything concurrently; the slow one reads nothing.
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = tokio::spawn({
        let progress = progress.clone();
        async move {
            let mut seqs = Vec::new();
            loop {
                let update = fast.next().await;
                let seq = update["seq"].as_u64().unwrap();
                progress.store(seq, std::sync::atomic::Ordering::SeqCst);
                seqs.push(seq);
                if update["data"]["channels"][0] == "last" {
                    return (seqs, fast);
                }
            }
        }
    });
    // ~600 KB per frame: the slow socket's kernel buffers fill, then its queue of 8.
    let mut published = 0usize;
    while h.state.hub().subscriber_count("p1") == 2 {
        assert!(published < 400, "slow client never disconnected");
        h.bus
            .publish_record(Topic::EegTrace, "p1", &trace("p1", 32, 2048, published))
            .await
            .unwrap();
        published += 1;
        // A fast browser keeps up: wait for it, so only the slow one falls behind.
        let deadline = tokio::time::Instant::now() + WAIT;
        while progress.load(std::sync::atomic::Ordering::SeqCst) + 2 < published as u64 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fast client stalled"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    eprintln!("slow client disconnected after {published} trace frames of ~600 KB");
    // The others keep receiving after the disconnect.
    for _ in 0..5 {
        h.bus
            .publish_record(Topic::EegTrace, "p1", &trace("p1", 4, 64, published))
            .await
            .unwrap();
        published += 1;
    }
    let mut last = trace("p1", 1, 8, published);
    last.channels = vec!["last".to_owned()];
    h.bus
        .publish_record(Topic::EegTrace, "p1", &last)
        .await
        .unwrap();
    published += 1;
    let (seqs, fast) = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("fast client finishes")
        .unwrap();
    assert_eq!(
        seqs,
        (1..=published as u64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );

    // The slow client's stream ends (after what was already in flight) with 1013.
    let mut close_code = None;
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(frame) = slow.ws.next().await {
            match frame {
                Ok(Message::Close(Some(frame))) => close_code = Some(u16::from(frame.code)),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "slow client's socket was closed");
    if let Some(code) = close_code {
        assert_eq!(code, 1013);
    }
    fast.close().await;
    let (_, _, body) = h
        .http(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert!(
        body.as_str()
            .unwrap()
            .contains("vigil_dashboard_clients_dropped_total{reason=\"slow\"}"),
        "{body}"
    );
}

#[tokio::test]
async fn reconnecting_client_resumes_without_gap_or_duplicate() {
    let (h, _) = harness(memory_bus()).await;
    let (cookie, _) = h.login("alice", "alice-pw").await;
    const N: usize = 300;
    let publisher = {
        let bus = h.bus.clone();
        tokio::spawn(async move {
            for i in 0..N {
                publish_hr(&bus, &hr_batch("p1", i)).await;
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        })
    };
    let mut last: Option<u64> = None;
    let mut epoch = String::new();
    let mut connections = 0;
    let mut resumed = 0;
    while last != Some(N as u64) {
        let query = match last {
            Some(seq) => format!("patients=p1&epoch={epoch}&after={seq}"),
            None => "patients=p1".to_owned(),
        };
        let mut client = h.connect(&query, Some(&cookie)).await.unwrap();
        connections += 1;
        let (begin, items) = client.snapshot().await;
        epoch = begin["epoch"].as_str().unwrap().to_owned();
        if last.is_some() {
            assert_eq!(
                begin["resumed"], true,
                "ring still holds the missed updates"
            );
            resumed += 1;
        }
        let mut seqs: Vec<u64> = items.iter().map(|i| i["seq"].as_u64().unwrap()).collect();
        // Then a few live ones, and drop the connection mid-stream.
        for _ in 0..(7 * connections % 23) {
            if seqs.last().copied().or(last) == Some(N as u64) {
                break;
            }
            seqs.push(client.next().await["seq"].as_u64().unwrap());
        }
        for seq in seqs {
            assert_eq!(seq, last.unwrap_or(0) + 1, "gap or duplicate at the seam");
            last = Some(seq);
        }
        drop(client);
    }
    publisher.await.unwrap();
    assert!(resumed >= 3, "exercised the seam {resumed} times");

    // Another epoch (a restarted dashboard) is not resumed: a full snapshot replaces.
    let mut client = h
        .connect(
            &format!("patients=p1&epoch={}&after=5", Uuid::new_v4()),
            Some(&cookie),
        )
        .await
        .unwrap();
    let (begin, items) = client.snapshot().await;
    assert_eq!(begin["resumed"], false);
    assert_eq!(items.len(), N);
}

async fn raise(h: &Harness, patient_id: &str) -> AlertEvent {
    let event = raised(patient_id, AlertKind::Seizure);
    h.bus
        .publish_record(Topic::Alerts, patient_id, &event)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while h
        .state
        .hub()
        .open_alert(patient_id, event.alert_id)
        .is_none()
    {
        assert!(tokio::time::Instant::now() < deadline, "alert never seen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    event
}

fn ack_request(
    patient_id: &str,
    alert_id: Uuid,
    cookie: &str,
    csrf: Option<&str>,
) -> Request<Body> {
    let mut builder = Request::post(format!("/api/patients/{patient_id}/alerts/{alert_id}/ack"))
        .header("cookie", cookie)
        .header("content-type", "application/json");
    if let Some(token) = csrf {
        builder = builder.header("x-csrf-token", token);
    }
    builder.body(Body::from("{}")).unwrap()
}

/// Every acknowledgement on the alerts topic so far.
async fn acknowledgements(bus: &Bus) -> Vec<AlertEvent> {
    let mut consumer = bus
        .subscribe(
            &format!("check-{}", Uuid::new_v4().simple()),
            &[bus.topic(Topic::Alerts)],
        )
        .await
        .unwrap();
    let mut acks = Vec::new();
    while let Ok(Ok(msg)) = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await
    {
        let event: AlertEvent = codec::decode(&msg.payload, &DecodeLimits::default()).unwrap();
        if event.transition == AlertTransition::Acknowledged {
            acks.push(event);
        }
    }
    consumer.close().await.unwrap();
    acks
}

#[tokio::test]
async fn acknowledgement_needs_the_sessions_csrf_token() {
    let (h, _) = harness(memory_bus()).await;
    let event = raise(&h, "p1").await;
    let (cookie, csrf) = h.login("alice", "alice-pw").await;
    let (_, other_csrf) = h.login("alice", "alice-pw").await;
    for token in [None, Some(""), Some(other_csrf.as_str()), Some("forged")] {
        let (status, headers, body) = h
            .http(ack_request("p1", event.alert_id, &cookie, token))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{token:?}: {body}");
        assert_eq!(headers["content-type"], "application/problem+json");
        assert!(body["detail"].as_str().unwrap().contains("CSRF"), "{body}");
    }
    assert!(
        acknowledgements(&h.bus).await.is_empty(),
        "nothing published"
    );
    let (status, _, _) = h
        .http(ack_request("p1", event.alert_id, &cookie, Some(&csrf)))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn acknowledgement_publishes_the_alert_event_and_audits() {
    let (h, store) = harness(memory_bus()).await;
    let (cookie, csrf) = h.login("alice", "alice-pw").await;
    let mut watcher = h.connect("patients=p1", Some(&cookie)).await.unwrap();
    watcher.snapshot().await;
    let event = raise(&h, "p1").await;
    assert_eq!(watcher.next().await["data"]["transition"], "raised");

    let (status, _, body) = h
        .http(ack_request("p1", event.alert_id, &cookie, Some(&csrf)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["acknowledged"]["by"], "alice");

    let acks = acknowledgements(&h.bus).await;
    assert_eq!(acks.len(), 1);
    let ack = &acks[0];
    assert_eq!(ack.alert_id, event.alert_id);
    assert_eq!(ack.patient_id, "p1");
    assert_eq!(ack.kind, AlertKind::Seizure);
    assert_eq!(ack.onset_ns, event.onset_ns);
    assert_eq!(ack.by.as_deref(), Some("alice"));
    assert!(ack.at_ns >= event.at_ns);

    // Every screen sees it come back over the feed.
    let live = watcher.next().await;
    assert_eq!(live["data"]["transition"], "acknowledged");
    assert_eq!(live["data"]["by"], "alice");
    assert!(
        store
            .audit_log()
            .iter()
            .any(|a| a.action == "acknowledge_alert"
                && a.detail.contains(&event.alert_id.to_string()))
    );

    // Twice: 409; unknown alert: 404; researcher: 403; unassigned patient: 403.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _, _) = h
            .http(ack_request("p1", event.alert_id, &cookie, Some(&csrf)))
            .await;
        if status == StatusCode::CONFLICT {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
    }
    let (status, _, _) = h
        .http(ack_request("p1", Uuid::new_v4(), &cookie, Some(&csrf)))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let other = raise(&h, "p1").await;
    let (rita, rita_csrf) = h.login("rita", "rita-pw").await;
    let (status, _, _) = h
        .http(ack_request("p1", other.alert_id, &rita, Some(&rita_csrf)))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let p3 = raise(&h, "p3").await;
    let (status, _, _) = h
        .http(ack_request("p3", p3.alert_id, &cookie, Some(&csrf)))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        acknowledgements(&h.bus).await.len(),
        1,
        "refusals publish nothing"
    );
}

#[tokio::test]
async fn open_alerts_survive_in_the_snapshot_after_the_window() {
    let store = ward_store();
    let mut config = test_config();
    config.history_window_s = 0.2;
    let h = Harness::start(memory_bus(), store, config).await;
    let (cookie, _) = h.login("alice", "alice-pw").await;
    let event = raise(&h, "p2").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut client = h.connect("patients=p2", Some(&cookie)).await.unwrap();
    let (begin, items) = client.snapshot().await;
    assert!(items.is_empty(), "window passed");
    assert_eq!(
        begin["open_alerts"][0]["alert_id"],
        event.alert_id.to_string()
    );
    assert_eq!(
        begin["open_alerts"][0]["acknowledged_by"],
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn history_comes_from_storage_and_is_audited() {
    let (h, store) = harness(memory_bus()).await;
    store.add_probability(probability("p1", T0, vec![0.2, f32::NAN]));
    store.add_probability(probability("p1", T0 + 1_000_000_000, vec![0.4]));
    store.add_heart_rate(
        "p1",
        &[HrSample {
            t_ns: T0,
            bpm: 72.0,
            rr_ms: Some(830.0),
        }],
    );
    let (cookie, _) = h.login("alice", "alice-pw").await;
    let get = |path: String| authed_get(&cookie, path);
    let range = format!("from_ns={T0}&to_ns={}", T0 + 10_000_000_000);
    let (status, _, body) = h
        .http(get(format!(
            "/api/patients/p1/history/prob?{range}&limit=1"
        )))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"][0]["p"], serde_json::json!([0.2, null]));
    let cursor = body["next_cursor"].as_str().unwrap().to_owned();
    let (_, _, body) = h
        .http(get(format!(
            "/api/patients/p1/history/prob?{range}&limit=1&cursor={cursor}"
        )))
        .await;
    assert_eq!(body["items"][0]["p"], serde_json::json!([0.4]));
    assert_eq!(body["next_cursor"], serde_json::Value::Null);
    let (_, _, body) = h
        .http(get(format!("/api/patients/p1/history/hr?{range}")))
        .await;
    assert_eq!(
        body["items"][0],
        serde_json::json!([T0 as f64 / 1e6, 72.0, 830.0])
    );
    let audit = store.audit_log();
    assert_eq!(
        audit.iter().filter(|a| a.action == "history_read").count(),
        3
    );

    for (path, status) in [
        (format!("/api/patients/p3/history/prob?{range}"), 403),
        (format!("/api/patients/p1/history/nope?{range}"), 404),
        (
            "/api/patients/p1/history/prob?from_ns=5&to_ns=1".to_owned(),
            400,
        ),
        ("/api/patients/p1/history/prob".to_owned(), 400),
        (format!("/api/patients/bad%20id/history/prob?{range}"), 400),
    ] {
        let (got, headers, body) = h.http(get(path.clone())).await;
        assert_eq!(got.as_u16(), status, "{path}: {body}");
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{path}"
        );
    }
    // A read that cannot be audited is refused.
    store.set_failing(true);
    let (status, _, _) = h
        .http(get(format!("/api/patients/p1/history/prob?{range}")))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn login_sets_a_hardened_cookie_and_pages_carry_security_headers() {
    let (h, store) = harness(memory_bus()).await;
    let login = |body: &str, content_type: &str| {
        Request::post("/api/login")
            .header("content-type", content_type)
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let (status, headers, body) = h
        .http(login(
            r#"{"username":"alice","password":"alice-pw"}"#,
            "application/json",
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "cookie_secure defaults to off");
    assert_eq!(body["user"]["role"], "clinician");
    assert_eq!(body["may_acknowledge"], true);

    let (status, headers, _) = h
        .http(login(
            r#"{"username":"alice","password":"wrong"}"#,
            "application/json",
        ))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(headers.get("set-cookie").is_none());
    let (status, _, _) = h
        .http(login(
            "username=alice&password=alice-pw",
            "application/x-www-form-urlencoded",
        ))
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "no form logins");

    let (status, headers, _) = h.http(Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let (status, headers, _) = h
        .http(
            Request::get("/assets/uPlot.iife.min.js")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));

    // A deleted user's cookie stops working at once.
    let (cookie, _) = h.login("bob", "bob-pw").await;
    let session = || {
        Request::get("/api/session")
            .header("cookie", cookie.as_str())
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(h.http(session()).await.0, StatusCode::OK);
    store.remove_user(2);
    assert_eq!(h.http(session()).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn secure_cookies_and_hsts_when_configured() {
    let mut config = test_config();
    config.cookie_secure = true;
    let h = Harness::start(memory_bus(), ward_store(), config).await;
    let (status, headers, _) = h
        .http(
            Request::post("/api/login")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"username":"alice","password":"alice-pw"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["set-cookie"]
        .to_str()
        .unwrap()
        .ends_with("; Secure"));
    assert!(headers.contains_key("strict-transport-security"));
}

#[tokio::test]
async fn ward_lists_assigned_patients_and_metrics_show_push_latency() {
    let (h, _) = harness(memory_bus()).await;
    let (cookie, _) = h.login("alice", "alice-pw").await;
    let (status, _, body) = h
        .http(
            Request::get("/api/patients")
                .header("cookie", cookie.as_str())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let patients: BTreeSet<String> = serde_json::from_value(body["patients"].clone()).unwrap();
    assert_eq!(patients, ["p1".to_owned(), "p2".to_owned()].into());

    let mut client = h
        .connect("patients=p2&traces=true", Some(&cookie))
        .await
        .unwrap();
    client.snapshot().await;
    h.bus
        .publish_record(Topic::EegTrace, "p2", &trace("p2", 2, 64, 0))
        .await
        .unwrap();
    client.next().await;
    let (_, _, body) = h
        .http(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    let text = body.as_str().unwrap();
    assert!(
        text.contains("vigil_dashboard_push_latency_seconds_bucket{record=\"trace\""),
        "{text}"
    );
    let (status, _, _) = h
        .http(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "bus check set by the feed");
}

#[tokio::test]
async fn shutdown_closes_open_sockets_with_going_away() {
    let (h, _) = harness(memory_bus()).await;
    let (cookie, _) = h.login("alice", "alice-pw").await;
    let mut client = h.connect("patients=p1", Some(&cookie)).await.unwrap();
    client.snapshot().await;
    h.shutdown.cancel();
    let frame = tokio::time::timeout(WAIT, client.ws.next())
        .await
        .expect("closed in time");
    match frame {
        Some(Ok(Message::Close(Some(close)))) => assert_eq!(u16::from(close.code), 1001),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
}
