//! Router tests: `app()` driven with `oneshot`, a SQLite device directory and the in-process
//! bus. Every error path answers with an RFC 9457 problem body.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::http::*;
use common::*;
use serde_json::Value;
use tower::ServiceExt;
use uuid::Uuid;
use vigil_core::codec;
use vigil_core::config::IngestConfig;
use vigil_ingest::DeviceDirectory;

#[tokio::test]
async fn json_and_binary_chunks_are_produced_with_server_time() {
    let h = harness().await;
    let mut consumer = eeg_consumer(&h.bus).await;
    let stream = Uuid::new_v4();
    let reply = post_json(&h, &chunk(stream, 0)).await;
    let a = ack(&reply);
    assert_eq!(reply.body["gap"], Value::Null, "gap is an explicit null");
    assert_eq!(reply.body["status"], "accepted");
    assert_eq!((a.stream_id, a.seq), (stream, 0));

    let before = now_ns();
    let binary = codec::encode(&chunk(stream, 1)).expect("encode");
    for ct in [BINARY, "application/octet-stream"] {
        let reply = send(
            &h.router,
            "/v1/eeg",
            Some(&h.token),
            Some(ct),
            binary.clone(),
        )
        .await;
        ack(&reply);
    }
    let produced = drain_eeg(&mut consumer, Duration::from_millis(300)).await;
    let seqs: Vec<u64> = produced.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [0, 1], "the binary resend was not produced twice");
    assert!(
        produced[1].received_ns >= before,
        "received_ns is server time"
    );
}

#[tokio::test]
async fn heart_rate_batches_are_accepted() {
    let h = harness().await;
    let batch = hr_batch(Uuid::new_v4(), 7);
    let reply = send(
        &h.router,
        "/v1/hr",
        Some(&h.token),
        Some(JSON),
        codec::to_json(&batch).expect("json"),
    )
    .await;
    assert_eq!(ack(&reply).seq, 7);
    // An EEG chunk is not a heart-rate batch.
    let reply = send(
        &h.router,
        "/v1/hr",
        Some(&h.token),
        Some(BINARY),
        codec::encode(&chunk(Uuid::new_v4(), 0)).expect("encode"),
    )
    .await;
    assert_problem(&reply, StatusCode::BAD_REQUEST, "expected a HrBatch");
}

#[tokio::test]
async fn missing_unknown_and_revoked_tokens_get_401() {
    let h = harness_with(
        memory_bus(),
        true,
        IngestConfig {
            auth_cache_ttl_ms: 0,
            ..test_ingest_config()
        },
    )
    .await;
    let body = codec::to_json(&chunk(Uuid::new_v4(), 0)).expect("json");
    let reply = send(&h.router, "/v1/eeg", None, Some(JSON), body.clone()).await;
    assert_problem(&reply, StatusCode::UNAUTHORIZED, "missing");
    assert!(reply.headers.contains_key(header::WWW_AUTHENTICATE));
    let reply = send(
        &h.router,
        "/v1/eeg",
        Some("vigil_dt_nope"),
        Some(JSON),
        body.clone(),
    )
    .await;
    assert_problem(&reply, StatusCode::UNAUTHORIZED, "unknown or revoked");

    assert_eq!(
        send(
            &h.router,
            "/v1/eeg",
            Some(&h.token),
            Some(JSON),
            body.clone()
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    assert!(h.directory.revoke(DEVICE).await.expect("revoke"));
    let reply = send(&h.router, "/v1/eeg", Some(&h.token), Some(JSON), body).await;
    assert_problem(&reply, StatusCode::UNAUTHORIZED, "unknown or revoked");
}

#[tokio::test]
async fn revocation_takes_effect_after_the_cache_ttl() {
    let h = harness_with(
        memory_bus(),
        true,
        IngestConfig {
            auth_cache_ttl_ms: 300,
            ..test_ingest_config()
        },
    )
    .await;
    let stream = Uuid::new_v4();
    ack(&post_json(&h, &chunk(stream, 0)).await);
    h.directory.revoke(DEVICE).await.expect("revoke");
    ack(&post_json(&h, &chunk(stream, 1)).await); // still cached
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        post_json(&h, &chunk(stream, 2)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn records_for_another_patient_or_device_get_403() {
    let h = harness().await;
    let mut c = chunk(Uuid::new_v4(), 0);
    c.patient_id = "pat-2".into();
    assert_problem(
        &post_json(&h, &c).await,
        StatusCode::FORBIDDEN,
        "patient_id",
    );
    let mut c = chunk(Uuid::new_v4(), 0);
    c.device_id = "dev-2".into();
    assert_problem(&post_json(&h, &c).await, StatusCode::FORBIDDEN, "device_id");
}

#[tokio::test]
async fn oversize_bodies_get_413() {
    let h = harness_with(
        memory_bus(),
        true,
        IngestConfig {
            max_body_bytes: 1024,
            ..test_ingest_config()
        },
    )
    .await;
    let big = codec::encode(&chunk(Uuid::new_v4(), 0)).expect("encode"); // > 2 KiB
    assert!(big.len() > 2048);
    let reply = send(
        &h.router,
        "/v1/eeg",
        Some(&h.token),
        Some(BINARY),
        big.clone(),
    )
    .await;
    assert_problem(&reply, StatusCode::PAYLOAD_TOO_LARGE, "1024");
    // With a truthful Content-Length the body is refused before it is read.
    let req = Request::post("/v1/eeg")
        .header(header::AUTHORIZATION, format!("Bearer {}", h.token))
        .header(header::CONTENT_TYPE, BINARY)
        .header(header::CONTENT_LENGTH, big.len())
        .body(Body::from(big))
        .expect("request");
    let response = h.router.clone().oneshot(req).await.expect("response");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unsupported_content_type_gets_415() {
    let h = harness().await;
    let body = codec::to_json(&chunk(Uuid::new_v4(), 0)).expect("json");
    let reply = send(
        &h.router,
        "/v1/eeg",
        Some(&h.token),
        Some("text/plain"),
        body.clone(),
    )
    .await;
    assert_problem(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, "text/plain");
    let reply = send(&h.router, "/v1/eeg", Some(&h.token), None, body).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn malformed_bodies_get_400_naming_the_problem() {
    let h = harness().await;
    let reply = send(
        &h.router,
        "/v1/eeg",
        Some(&h.token),
        Some(JSON),
        b"{\"patient_id\":".to_vec(),
    )
    .await;
    assert_problem(&reply, StatusCode::BAD_REQUEST, "malformed EegChunk JSON");
    let mut value: Value =
        serde_json::from_slice(&codec::to_json(&chunk(Uuid::new_v4(), 0)).expect("json"))
            .expect("value");
    value["seq"] = Value::from("one");
    let reply = send(
        &h.router,
        "/v1/eeg",
        Some(&h.token),
        Some(JSON),
        value.to_string().into_bytes(),
    )
    .await;
    assert_problem(&reply, StatusCode::BAD_REQUEST, "seq");
    let reply = send(
        &h.router,
        "/v1/eeg",
        Some(&h.token),
        Some(BINARY),
        b"XX\x01\x01garbage".to_vec(),
    )
    .await;
    assert_problem(&reply, StatusCode::BAD_REQUEST, "bad magic");
}

#[tokio::test]
async fn invalid_records_get_422_naming_the_field() {
    let h = harness().await;
    let mut c = chunk(Uuid::new_v4(), 0);
    c.samples[1][10] = f32::INFINITY;
    let reply = send(
        &h.router,
        "/v1/eeg",
        Some(&h.token),
        Some(BINARY),
        codec::encode(&c).expect("encode"),
    )
    .await;
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "infinite");

    let mut c = chunk(Uuid::new_v4(), 0);
    c.samples[0][3] = f32::NAN; // NaN = missing sample: allowed
    ack(&post_json(&h, &c).await);

    let mut c = chunk(Uuid::new_v4(), 0);
    c.sample_rate_hz = 250.0;
    assert_problem(
        &post_json(&h, &c).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "sample_rate_hz",
    );

    let mut c = chunk(Uuid::new_v4(), 0);
    c.channels.reverse();
    assert_problem(
        &post_json(&h, &c).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "channels",
    );

    let mut c = chunk(Uuid::new_v4(), 0);
    c.samples[1].pop();
    assert_problem(
        &post_json(&h, &c).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "channel 1",
    );
}

#[tokio::test]
async fn rate_limit_gets_429_with_retry_after() {
    let h = harness_with(
        memory_bus(),
        true,
        IngestConfig {
            rate_limit_per_s: 0.5,
            rate_limit_burst: 2,
            ..test_ingest_config()
        },
    )
    .await;
    let stream = Uuid::new_v4();
    ack(&post_json(&h, &chunk(stream, 0)).await);
    ack(&post_json(&h, &chunk(stream, 1)).await);
    let reply = post_json(&h, &chunk(stream, 2)).await;
    assert_problem(&reply, StatusCode::TOO_MANY_REQUESTS, "rate limit");
    let retry: u64 = reply.headers[header::RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "retry after {retry}");
}

#[tokio::test]
async fn bus_failure_gets_503_and_the_record_is_not_marked_accepted() {
    // Topics not created: the memory bus refuses with UnknownTopic.
    let bus_config = memory_bus();
    let h = harness_with(bus_config, false, test_ingest_config()).await;
    let stream = Uuid::new_v4();
    let reply = post_json(&h, &chunk(stream, 0)).await;
    assert_problem(&reply, StatusCode::SERVICE_UNAVAILABLE, "does not exist");
    assert_eq!(reply.headers[header::RETRY_AFTER], "2");
    assert_eq!(reply.body["retry_after_s"], 2);

    h.bus.create_vigil_topics().await.expect("topics");
    let mut consumer = eeg_consumer(&h.bus).await;
    let a = ack(&post_json(&h, &chunk(stream, 0)).await);
    assert_eq!(
        a.status,
        vigil_ingest::AckStatus::Accepted,
        "the retry is produced"
    );
    let produced = drain_eeg(&mut consumer, Duration::from_millis(300)).await;
    assert_eq!(produced.len(), 1);
}

#[tokio::test]
async fn device_clock_offset_is_corrected_before_producing() {
    let h = harness().await;
    let mut consumer = eeg_consumer(&h.bus).await;
    let stream = Uuid::new_v4();
    // The device clock is 90 s behind: its chunks claim to end 90 s ago.
    let behind = 90_000_000_000i64;
    let start = now_ns() - behind - 1_000_000_000;
    for seq in 0..3 {
        ack(&post_json(
            &h,
            &chunk_at(stream, seq, start + seq as i64 * 1_000_000_000),
        )
        .await);
    }
    let produced = drain_eeg(&mut consumer, Duration::from_millis(300)).await;
    assert_eq!(produced.len(), 3);
    for (seq, c) in produced.iter().enumerate() {
        let lag = c.received_ns - (c.start_ns + c.duration_ns());
        // Uncorrected, the lag would be over 90 s; corrected it is at most the 2 s of
        // device time these back-to-back chunks span, never negative.
        assert!(
            (0..=2_100_000_000).contains(&lag),
            "chunk {seq}: corrected end must be just before receipt, lag {lag} ns"
        );
        let original = start + seq as i64 * 1_000_000_000;
        assert!(
            c.start_ns - original >= behind - 2_100_000_000,
            "start_ns was shifted by about the offset"
        );
    }
    let first = &produced[0];
    assert!(
        first.received_ns - (first.start_ns + first.duration_ns()) < 100_000_000,
        "the first observation defines the estimate"
    );
}

#[tokio::test]
async fn device_time_is_kept_when_clock_correction_is_off() {
    // A replay 30x faster than real time: device time runs ahead of the wall clock, and
    // must reach inference as simulation time, not squeezed onto receipt times.
    let h = harness_with(
        memory_bus(),
        true,
        IngestConfig {
            correct_device_clock: false,
            ..test_ingest_config()
        },
    )
    .await;
    let mut consumer = eeg_consumer(&h.bus).await;
    let stream = Uuid::new_v4();
    let start = now_ns();
    for seq in 0..3 {
        ack(&post_json(
            &h,
            &chunk_at(stream, seq, start + seq as i64 * 30_000_000_000),
        )
        .await);
    }
    let produced = drain_eeg(&mut consumer, Duration::from_millis(300)).await;
    assert_eq!(produced.len(), 3);
    for (seq, c) in produced.iter().enumerate() {
        assert_eq!(
            c.start_ns,
            start + seq as i64 * 30_000_000_000,
            "device time kept"
        );
        assert!(c.received_ns >= start, "receipt time still set");
    }
}

#[tokio::test]
async fn readyz_follows_the_bus_probe_and_openapi_is_served() {
    let h = harness().await;
    let status = |router: Router| async move {
        router
            .oneshot(
                Request::get("/readyz")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response")
            .status()
    };
    assert_eq!(
        status(h.router.clone()).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(h.state.probe_bus().await);
    assert_eq!(status(h.router.clone()).await, StatusCode::OK);
    assert_eq!(get(&h.router, "/healthz").await, "ok\n");

    let doc: Value = serde_json::from_str(&get(&h.router, "/openapi.json").await).expect("json");
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3."));
    for path in ["/v1/eeg", "/v1/hr", "/v1/stream"] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    assert!(doc["components"]["schemas"]["IngestAck"].is_object());
    assert!(doc["components"]["schemas"]["IngestAck"]["properties"]["late"].is_object());
    for path in ["/v1/eeg", "/v1/hr"] {
        for status in ["409", "422", "503"] {
            assert!(
                doc["paths"][path]["post"]["responses"][status].is_object(),
                "{path} {status} documented"
            );
        }
    }
}

#[tokio::test]
async fn arbitrary_bodies_never_crash_the_gateway() {
    use rand::{Rng, SeedableRng};
    let h = harness().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let valid = codec::encode(&chunk(Uuid::new_v4(), 0)).expect("encode");
    let json = codec::to_json(&chunk(Uuid::new_v4(), 0)).expect("json");
    for i in 0..300 {
        let (ct, mut body) = if i % 2 == 0 {
            (BINARY, valid.clone())
        } else {
            (JSON, json.clone())
        };
        // Flip, cut or garble bytes of a valid record.
        match i % 3 {
            0 => {
                for _ in 0..rng.random_range(1..8) {
                    let at = rng.random_range(0..body.len());
                    body[at] = rng.random();
                }
            }
            1 => body.truncate(rng.random_range(0..body.len())),
            _ => body = (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
        }
        let reply = send(&h.router, "/v1/eeg", Some(&h.token), Some(ct), body).await;
        assert!(
            reply.status.is_client_error() || reply.status == StatusCode::ACCEPTED,
            "case {i}: {} {}",
            reply.status,
            reply.body
        );
        if reply.status.is_client_error() {
            assert_eq!(
                reply.headers[header::CONTENT_TYPE],
                "application/problem+json"
            );
        }
    }
}

#[tokio::test]
async fn background_probe_keeps_readiness_current_until_shutdown() {
    let h = harness().await;
    assert!(!h.state.readiness().is_ready(), "no probe yet");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let probe = h
        .state
        .spawn_bus_probe(Duration::from_millis(20), shutdown.clone());
    tokio::time::timeout(Duration::from_secs(5), async {
        while !h.state.readiness().is_ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("ready after the first probe");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), probe)
        .await
        .expect("probe task stops on shutdown")
        .expect("no panic");
}
