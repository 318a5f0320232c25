//! Sequence rules through the router (`oneshot`, in-process bus): late arrivals, duplicates,
//! gaps, conflicting resends, seqs below the window, and concurrent requests of one stream.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use common::http::*;
use common::*;
use serde_json::Value;
use uuid::Uuid;
use vigil_core::codec;

#[tokio::test]
async fn duplicates_are_acknowledged_but_not_produced_and_gaps_reported() {
    let h = harness().await;
    let mut consumer = eeg_consumer(&h.bus).await;
    let stream = Uuid::new_v4();
    let c10 = chunk(stream, 10);
    assert_eq!(ack(&post_json(&h, &c10).await).gap, None);
    let dup = ack(&post_json(&h, &c10).await);
    assert_eq!(dup.status, vigil_ingest::AckStatus::Duplicate);
    assert!(!dup.late);
    let gap = ack(&post_json(&h, &chunk(stream, 13)).await);
    assert_eq!(gap.status, vigil_ingest::AckStatus::Accepted);
    let g = gap.gap.expect("gap reported");
    assert_eq!((g.expected, g.got), (11, 13));
    let c12 = chunk(stream, 12);
    let late = ack(&post_json(&h, &c12).await);
    assert_eq!(
        (late.status, late.late, late.gap),
        (vigil_ingest::AckStatus::Accepted, true, None),
        "behind the high mark but never received: accepted late"
    );
    let again = ack(&post_json(&h, &c12).await);
    assert_eq!(
        (again.status, again.late),
        (vigil_ingest::AckStatus::Duplicate, false)
    );
    ack(&post_json(&h, &chunk(stream, 14)).await);

    // Another stream of the same device is independent.
    let other = ack(&post_json(&h, &chunk(Uuid::new_v4(), 10)).await);
    assert_eq!(other.status, vigil_ingest::AckStatus::Accepted);

    let seqs: Vec<u64> = drain_eeg(&mut consumer, Duration::from_millis(300))
        .await
        .iter()
        .filter(|c| c.stream_id == stream)
        .map(|c| c.seq)
        .collect();
    assert_eq!(seqs, [10, 13, 12, 14]);

    let metrics = get(&h.router, "/metrics").await;
    for name in [
        "vigil_ingest_gaps_total",
        "vigil_ingest_duplicates_total",
        "vigil_ingest_late_total",
        "vigil_ingest_produce_latency_seconds",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
}

#[tokio::test]
async fn a_resend_with_other_content_gets_409_and_is_not_produced() {
    let h = harness().await;
    let mut consumer = eeg_consumer(&h.bus).await;
    let stream = Uuid::new_v4();
    let original = chunk(stream, 0);
    ack(&post_json(&h, &original).await);

    // The same record in the other encoding, and with a device-set received_ns (the
    // gateway overwrites it), is the same content.
    let mut same = original.clone();
    same.received_ns = 12_345;
    let reply = send(
        &h.router,
        "/v1/eeg",
        Some(&h.token),
        Some(BINARY),
        codec::encode(&same).expect("encode"),
    )
    .await;
    assert_eq!(ack(&reply).status, vigil_ingest::AckStatus::Duplicate);

    let mut samples_differ = original.clone();
    samples_differ.samples[1][100] += 1.0;
    let mut time_differs = original.clone();
    time_differs.start_ns += 1_000_000;
    for changed in [samples_differ, time_differs] {
        let reply = post_json(&h, &changed).await;
        assert_problem(&reply, StatusCode::CONFLICT, "different content");
        assert!(
            reply.body["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("/seq_conflict")),
            "{}",
            reply.body
        );
    }
    assert_eq!(
        ack(&post_json(&h, &original).await).status,
        vigil_ingest::AckStatus::Duplicate,
        "the original is still recognised"
    );

    let produced = drain_eeg(&mut consumer, Duration::from_millis(300)).await;
    assert_eq!(produced.len(), 1, "only the original was produced");
    assert_eq!(produced[0].samples, original.samples);
    let metrics = get(&h.router, "/metrics").await;
    assert!(
        metrics.contains("vigil_ingest_seq_refused_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn seqs_below_the_window_get_422_never_duplicate_and_are_not_produced() {
    let h = harness_with_seq_window(4).await;
    let mut consumer = eeg_consumer(&h.bus).await;
    let stream = Uuid::new_v4();
    let chunks: Vec<_> = (0..10).map(|seq| chunk(stream, seq)).collect();
    for (seq, c) in chunks.iter().enumerate() {
        if seq != 3 && seq != 7 {
            ack(&post_json(&h, c).await);
        }
    }
    // Tracked: 6..=9. 5 was received, 3 never was: neither can be told apart any more.
    for seq in [5, 3] {
        let reply = post_json(&h, &chunks[seq]).await;
        assert_problem(
            &reply,
            StatusCode::UNPROCESSABLE_ENTITY,
            "below the gateway's window",
        );
        assert!(
            reply.body["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("/seq_below_window")),
            "{}",
            reply.body
        );
    }
    assert_eq!(
        ack(&post_json(&h, &chunks[6]).await).status,
        vigil_ingest::AckStatus::Duplicate,
        "inside the window"
    );
    let late = ack(&post_json(&h, &chunks[7]).await);
    assert!(late.late, "7 is inside the window and was never received");

    let seqs: Vec<u64> = drain_eeg_seqs(&mut consumer, Duration::from_millis(300)).await;
    assert_eq!(seqs, [0, 1, 2, 4, 5, 6, 8, 9, 7]);
}

#[tokio::test]
async fn two_in_flight_requests_arriving_out_of_order_are_both_produced_once() {
    let h = harness().await;
    let mut consumer = eeg_consumer(&h.bus).await;
    let stream = Uuid::new_v4();
    ack(&post_json(&h, &chunk(stream, 0)).await);

    // Seq 1 goes out first, but its body is still uploading (a slow uplink) while seq 2
    // is sent and acknowledged: the gateway sees seq 2 before seq 1.
    let (release, uploaded) = tokio::sync::oneshot::channel::<()>();
    let slow_bytes = codec::encode(&chunk(stream, 1)).expect("encode");
    let slow_body = Body::from_stream(futures::stream::once(async move {
        let _ = uploaded.await;
        Ok::<_, std::convert::Infallible>(slow_bytes)
    }));
    let (router, token) = (h.router.clone(), h.token.clone());
    let earlier = tokio::spawn(async move {
        send_body(&router, "/v1/eeg", Some(&token), Some(BINARY), slow_body).await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let later = post_json(&h, &chunk(stream, 2)).await;
    assert_eq!(later.status, StatusCode::ACCEPTED, "{}", later.body);
    assert_eq!(later.body["status"], "accepted", "{}", later.body);
    assert_eq!(later.body["gap"]["expected"], 1, "{}", later.body);
    release.send(()).expect("upload still waiting");
    let earlier = earlier.await.expect("task");

    let produced: Vec<u64> = drain_eeg_seqs(&mut consumer, Duration::from_millis(300)).await;
    let context = format!(
        "earlier reply {} {}, produced {produced:?}",
        earlier.status, earlier.body
    );
    assert_eq!(earlier.status, StatusCode::ACCEPTED, "{context}");
    assert_eq!(
        earlier.body["status"], "accepted",
        "late is not duplicate: {context}"
    );
    assert_eq!(earlier.body["late"], true, "{context}");
    assert_eq!(earlier.body["gap"], Value::Null, "{context}");
    assert_eq!(
        produced,
        [0, 2, 1],
        "each exactly once, in arrival order: {context}"
    );
}
#[tokio::test]
async fn concurrent_resends_of_one_record_are_produced_once() {
    let h = harness().await;
    let mut consumer = eeg_consumer(&h.bus).await;
    let stream = Uuid::new_v4();
    let body = codec::encode(&chunk(stream, 0)).expect("encode");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let router = h.router.clone();
            let token = h.token.clone();
            let body = body.clone();
            tokio::spawn(
                async move { send(&router, "/v1/eeg", Some(&token), Some(BINARY), body).await },
            )
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(ack(&task.await.expect("task")).status);
    }
    let accepted = statuses
        .iter()
        .filter(|s| **s == vigil_ingest::AckStatus::Accepted)
        .count();
    assert_eq!(accepted, 1, "{statuses:?}");
    let produced = drain_eeg(&mut consumer, Duration::from_millis(300)).await;
    assert_eq!(produced.len(), 1);
}
