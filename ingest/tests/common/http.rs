//! Requests through the router with `oneshot`, and checks of their replies.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;
use vigil_core::codec;
use vigil_ingest::IngestAck;

use super::Harness;

pub const JSON: &str = "application/json";
pub const BINARY: &str = "application/vnd.vigil.record";

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

pub async fn send(
    router: &Router,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    send_body(router, path, token, content_type, Body::from(body)).await
}

pub async fn send_body(
    router: &Router,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Body,
) -> Reply {
    let mut req = Request::post(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    let response = router
        .clone()
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn post_json(h: &Harness, chunk: &vigil_core::record::EegChunk) -> Reply {
    send(
        &h.router,
        "/v1/eeg",
        Some(&h.token),
        Some(JSON),
        codec::to_json(chunk).expect("json"),
    )
    .await
}

pub fn assert_problem(reply: &Reply, status: StatusCode, detail_contains: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(reply.body["status"], status.as_u16(), "{}", reply.body);
    assert!(reply.body["type"].is_string() && reply.body["title"].is_string());
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(detail_contains),
        "detail {detail:?} should mention {detail_contains:?}"
    );
}

pub fn ack(reply: &Reply) -> IngestAck {
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    serde_json::from_value(reply.body.clone()).expect("ack body")
}

pub async fn get(router: &Router, path: &str) -> String {
    let response = router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .expect("body");
    String::from_utf8_lossy(&bytes).into_owned()
}
