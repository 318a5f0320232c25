//! HTTP endpoints: `POST /v1/eeg`, `POST /v1/hr`, `GET /v1/stream` (WebSocket upgrade) and
//! `GET /openapi.json`.

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use vigil_core::record::{EegChunk, HrBatch};
use vigil_core::telemetry::events::Emit;

use crate::devices::{DeviceToken, RegisteredDevice};
use crate::error::{IngestError, Problem};
use crate::events::RecordRejected;
use crate::pipeline::{AckStatus, IngestAck, IngestRecord, WireFormat};
use crate::streams::Gap;
use crate::IngestState;

/// The device API routes (without the ops endpoints).
pub fn routes(state: IngestState) -> Router {
    let max = state.inner.max_body_bytes;
    Router::new()
        .route("/v1/eeg", post(post_eeg))
        .route("/v1/hr", post(post_hr))
        .route("/v1/stream", get(crate::ws::stream))
        .route("/openapi.json", get(openapi_json))
        .layer(DefaultBodyLimit::max(max))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl IngestState {
    /// The device holding the request's bearer token (401 if none, unknown or revoked).
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<RegisteredDevice, IngestError> {
        let token = bearer_token(headers)?;
        self.authenticate_token(&token).await
    }

    /// The active device holding `token` (cached briefly).
    pub async fn authenticate_token(
        &self,
        token: &DeviceToken,
    ) -> Result<RegisteredDevice, IngestError> {
        match self.inner.directory.authenticate(token).await {
            Ok(Some(device)) => Ok(device),
            Ok(None) => Err(IngestError::Unauthorized("unknown or revoked device token")),
            Err(source) => Err(IngestError::Directory {
                source,
                retry_after: self.inner.retry_after,
            }),
        }
    }

    /// Takes a rate-limit token for the device (429 when it has none).
    pub fn rate_limit(&self, device: &RegisteredDevice) -> Result<(), IngestError> {
        self.inner
            .rate
            .check(&device.device_id)
            .map_err(|retry_after| IngestError::RateLimited { retry_after })
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Result<DeviceToken, IngestError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(IngestError::Unauthorized(
            "missing Authorization: Bearer header",
        ))?
        .to_str()
        .map_err(|_| IngestError::Unauthorized("malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(IngestError::Unauthorized("malformed Authorization header"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(IngestError::Unauthorized(
            "Authorization must use the Bearer scheme",
        ));
    }
    Ok(DeviceToken::from_presented(token))
}

fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

async fn handle<R: IngestRecord>(
    state: IngestState,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<IngestAck>), IngestError> {
    let mut device_id = None;
    let result = async {
        // Authenticate before reading the body: strangers cannot make us buffer anything.
        let device = state.authenticate(&headers).await?;
        device_id = Some(device.device_id.clone());
        state.rate_limit(&device)?;
        let format = WireFormat::from_content_type(
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        )?;
        let max = state.inner.max_body_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max as u64) {
            return Err(IngestError::PayloadTooLarge { max });
        }
        let bytes = axum::body::to_bytes(body, max).await.map_err(|err| {
            if is_length_limit(&err) {
                IngestError::PayloadTooLarge { max }
            } else {
                IngestError::BodyRead(err.to_string())
            }
        })?;
        state.ingest_bytes::<R>(&device, format, &bytes).await
    }
    .await;
    match result {
        Ok(ack) => Ok((StatusCode::ACCEPTED, Json(ack))),
        Err(err) => {
            RecordRejected {
                reason: err.reason(),
                device_id: device_id.as_deref(),
            }
            .emit();
            Err(err)
        }
    }
}

/// Accepts one EEG chunk.
#[utoipa::path(
    post,
    path = "/v1/eeg",
    tag = "ingest",
    request_body(
        description = "One EegChunk as JSON (application/json) or in the binary codec \
            (application/vnd.vigil.record or application/octet-stream).",
        content(
            (serde_json::Value = "application/json"),
            (Vec<u8> = "application/vnd.vigil.record"),
            (Vec<u8> = "application/octet-stream")
        )
    ),
    responses(
        (status = 202, description = "Produced (`late: true` when it came after a higher seq of its stream), or an identical resend of a received seq (`duplicate`, not produced again)", body = IngestAck),
        (status = 400, description = "Malformed record", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, unknown or revoked token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Record for another patient or device", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Resend of a received seq with different content (seq_conflict); not produced, do not retry", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Unsupported Content-Type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid record, not matching the registration, or a seq below the gateway's window (seq_below_window: delivery unknown, not produced)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limit exceeded (see Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Bus did not acknowledge (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn post_eeg(
    State(state): State<IngestState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<IngestAck>), IngestError> {
    handle::<EegChunk>(state, headers, body).await
}

/// Accepts one heart-rate batch.
#[utoipa::path(
    post,
    path = "/v1/hr",
    tag = "ingest",
    request_body(
        description = "One HrBatch as JSON or in the binary codec.",
        content(
            (serde_json::Value = "application/json"),
            (Vec<u8> = "application/vnd.vigil.record"),
            (Vec<u8> = "application/octet-stream")
        )
    ),
    responses(
        (status = 202, description = "Produced (`late: true` when it came after a higher seq of its stream), or an identical resend of a received seq (`duplicate`, not produced again)", body = IngestAck),
        (status = 400, description = "Malformed record", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, unknown or revoked token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Record for another patient or device", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Resend of a received seq with different content (seq_conflict); not produced, do not retry", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Unsupported Content-Type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid record, or a seq below the gateway's window (seq_below_window: delivery unknown, not produced)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limit exceeded (see Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Bus did not acknowledge (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn post_hr(
    State(state): State<IngestState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<IngestAck>), IngestError> {
    handle::<HrBatch>(state, headers, body).await
}

/// Documents the WebSocket endpoint (served by [`crate::ws::stream`]).
#[utoipa::path(
    get,
    path = "/v1/stream",
    tag = "ingest",
    description = "WebSocket. Binary frames: binary-codec records (EegChunk or HrBatch); text \
        frames: JSON records. One text reply per frame, in order: \
        {\"ack\": seq, \"stream_id\", \"status\", \"gap\", \"late\"} or {\"error\": problem, \"seq\"} \
        (problem status 409: conflicting resend, 422 seq_below_window: as over HTTP). \
        After an error carrying retry_after_s the server closes the socket (code 1013): \
        reconnect and resend every unacknowledged frame in order.",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 401, description = "Missing, unknown or revoked token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[allow(dead_code)]
fn stream_doc(_ws: WebSocketUpgrade) {}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The gateway's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vigil ingest gateway",
        description = "Device API of the Vigil EEG / heart-rate pipeline. See docs/INGEST.md."
    ),
    paths(post_eeg, post_hr, stream_doc),
    components(schemas(IngestAck, AckStatus, Gap, Problem)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

async fn openapi_json() -> Response {
    Json(ApiDoc::openapi()).into_response()
}
