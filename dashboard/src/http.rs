//! The HTTP API behind the page.
//!
//! | route | what |
//! |---|---|
//! | `GET /` , `GET /assets/{file}` | the page |
//! | `POST /api/login` `{username, password}` | sets the session cookie; returns the CSRF token |
//! | `POST /api/logout` (CSRF) | clears it |
//! | `GET /api/session` | who is logged in, the CSRF token, the hub epoch |
//! | `GET /api/patients` | the user's assigned patients |
//! | `GET /api/patients/{id}/history/{prob,hr,alerts,eeg,trends}?from_ns&to_ns&limit&cursor[&bucket_s]` | stored data (audited; `bucket_s` merges trend intervals) |
//! | `POST /api/patients/{id}/alerts/{alert_id}/ack` (CSRF) | acknowledges an alert |
//! | `GET /api/live?patients=..` | the WebSocket ([`crate::ws`]) |
//!
//! Every error is an RFC 9457 problem body; 401 without a valid session, 403 for a patient
//! not assigned to the user (also on the WebSocket), a wrong role or a bad CSRF token.

use std::fmt::Write as _;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;
use vigil_core::bus::Topic;
use vigil_core::record::{
    AlertEvent, AlertEvidence, AlertTransition, EegTrace, EegTrends, RecordLimits, Validate,
};
use vigil_core::telemetry::events::Emit;

use crate::directory::{AuditEntry, HistoryQuery, HistorySource, StaffUser};
use crate::error::DashboardError;
use crate::events::{AlertAcknowledged, LoginAttempt};
use crate::live::{self, AckRefusal, AlertEventJson};
use crate::session::{self, Session, CSRF_HEADER};
use crate::{assets, ws, DashboardState};

/// Largest API request body (login and acknowledgement bodies are tiny).
const MAX_BODY: usize = 16 * 1024;

/// The page, API and WebSocket routes.
pub fn routes(state: DashboardState) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::asset))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/session", get(session_info))
        .route("/api/patients", get(patients))
        .route("/api/patients/{patient_id}/history/{kind}", get(history))
        .route(
            "/api/patients/{patient_id}/alerts/{alert_id}/ack",
            post(acknowledge),
        )
        .route("/api/live", get(ws::live))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn now_s() -> i64 {
    vigil_core::time::now_ns() / 1_000_000_000
}

impl DashboardState {
    /// The logged-in user and their session, from the cookie; 401 otherwise. The user is
    /// looked up on every request, so a deleted user is locked out at once.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<(StaffUser, Session), DashboardError> {
        let session = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(session::cookie_value)
            .and_then(|value| self.inner.sessions.open(value, now_s()))
            .ok_or(DashboardError::Unauthorized(
                "not logged in, or the session expired: log in again",
            ))?;
        let user = self
            .inner
            .directory
            .user(session.user_id)
            .await?
            .ok_or(DashboardError::Unauthorized("this user no longer exists"))?;
        Ok((user, session))
    }

    /// 403 unless the user may read the patient.
    pub async fn authorize(
        &self,
        user: &StaffUser,
        patient_id: &str,
    ) -> Result<(), DashboardError> {
        check_patient_id(patient_id)?;
        if self.inner.directory.may_read(user, patient_id).await? {
            Ok(())
        } else {
            Err(DashboardError::Forbidden(format!(
                "patient {patient_id} is not assigned to {}",
                user.username
            )))
        }
    }

    /// [`DashboardState::authorize`], then the audit row (a read that cannot be audited is
    /// refused).
    pub async fn authorize_read(
        &self,
        user: &StaffUser,
        patient_id: &str,
        action: &str,
        detail: String,
    ) -> Result<(), DashboardError> {
        self.authorize(user, patient_id).await?;
        self.audit(user, patient_id, action, detail).await
    }

    /// Appends an audit row for a read or change of the patient's data.
    pub(crate) async fn audit(
        &self,
        user: &StaffUser,
        patient_id: &str,
        action: &str,
        detail: String,
    ) -> Result<(), DashboardError> {
        self.inner
            .directory
            .audit(&AuditEntry {
                user_id: user.id,
                patient_id: patient_id.to_owned(),
                action: action.to_owned(),
                detail,
            })
            .await?;
        Ok(())
    }
}

/// Patient ids follow the record rules; anything else is refused before reaching the
/// database or the logs.
pub fn check_patient_id(patient_id: &str) -> Result<(), DashboardError> {
    let ok = !patient_id.is_empty()
        && patient_id.len() <= RecordLimits::default().max_label_len
        && patient_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(DashboardError::BadRequest(format!(
            "{:?} is not a patient id",
            patient_id.chars().take(80).collect::<String>()
        )))
    }
}

fn json_body<T: for<'de> Deserialize<'de>>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, DashboardError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        // Also keeps cross-site HTML forms (which cannot send JSON) away from login.
        return Err(DashboardError::UnsupportedMediaType);
    }
    serde_json::from_slice(body).map_err(|e| DashboardError::BadRequest(e.to_string()))
}

fn check_csrf(
    state: &DashboardState,
    session: &Session,
    headers: &HeaderMap,
) -> Result<(), DashboardError> {
    let token = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if state.inner.sessions.check_csrf(session, token) {
        Ok(())
    } else {
        Err(DashboardError::Forbidden(
            "missing or invalid X-CSRF-Token header: reload the page".to_owned(),
        ))
    }
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

fn session_json(state: &DashboardState, user: &StaffUser, session: &Session) -> serde_json::Value {
    serde_json::json!({
        "user": { "username": user.username, "role": user.role },
        "csrf_token": state.inner.sessions.csrf_token(session),
        "epoch": state.inner.hub.epoch(),
        "expires_ms": session.expires_s as f64 * 1e3,
        "may_acknowledge": crate::directory::may_acknowledge(user.role),
    })
}

async fn login(
    State(state): State<DashboardState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashboardError> {
    let body: LoginBody = json_body(&headers, &body)?;
    let user = state
        .inner
        .directory
        .verify_login(&body.username, &body.password)
        .await?;
    LoginAttempt {
        username: &body.username,
        ok: user.is_some(),
    }
    .emit();
    let user = user.ok_or(DashboardError::Unauthorized(
        "unknown user or wrong password",
    ))?;
    let config = &state.inner.config;
    let (cookie, session) = state
        .inner
        .sessions
        .issue(user.id, now_s(), config.session_ttl_s);
    let set_cookie = session::set_cookie(&cookie, config.session_ttl_s, config.cookie_secure);
    Ok(with_cookie(
        Json(session_json(&state, &user, &session)),
        &set_cookie,
    ))
}

fn with_cookie(body: impl IntoResponse, set_cookie: &str) -> Response {
    let mut response = body.into_response();
    if let Ok(value) = HeaderValue::from_str(set_cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn logout(
    State(state): State<DashboardState>,
    headers: HeaderMap,
) -> Result<Response, DashboardError> {
    let (_, session) = state.authenticate(&headers).await?;
    check_csrf(&state, &session, &headers)?;
    Ok(with_cookie(
        Json(serde_json::json!({ "logged_out": true })),
        &session::clear_cookie(state.inner.config.cookie_secure),
    ))
}

async fn session_info(
    State(state): State<DashboardState>,
    headers: HeaderMap,
) -> Result<Response, DashboardError> {
    let (user, session) = state.authenticate(&headers).await?;
    Ok(Json(session_json(&state, &user, &session)).into_response())
}

async fn patients(
    State(state): State<DashboardState>,
    headers: HeaderMap,
) -> Result<Response, DashboardError> {
    let (user, _) = state.authenticate(&headers).await?;
    let patients = state.inner.directory.assigned_patients(&user).await?;
    Ok(Json(serde_json::json!({ "patients": patients })).into_response())
}

/// Query of a history request.
#[derive(Debug, Deserialize)]
pub struct HistoryParams {
    /// Start, UTC ns (inclusive).
    pub from_ns: i64,
    /// End, UTC ns (exclusive).
    pub to_ns: i64,
    /// Most items (default 1000, capped by `dashboard.max_history_limit`).
    pub limit: Option<u32>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// `trends` only: merge the intervals into columns of this many seconds (at least 2),
    /// for spans of hours (docs/DASHBOARD.md "Trends"); the whole range comes in one answer.
    pub bucket_s: Option<u32>,
}

fn push_items<T>(out: &mut String, items: &[T], item_json: impl Fn(&T) -> String) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&item_json(item));
    }
}

async fn history(
    State(state): State<DashboardState>,
    headers: HeaderMap,
    Path((patient_id, kind)): Path<(String, String)>,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Response, DashboardError> {
    let (user, _) = state.authenticate(&headers).await?;
    let Query(params) = params.map_err(|e| DashboardError::BadRequest(e.body_text()))?;
    if params.to_ns <= params.from_ns {
        return Err(DashboardError::BadRequest(
            "to_ns must be after from_ns".to_owned(),
        ));
    }
    if !matches!(kind.as_str(), "prob" | "hr" | "alerts" | "eeg" | "trends") {
        return Err(DashboardError::NotFound(format!(
            "no history of kind {kind:?}: use prob, hr, alerts, eeg or trends"
        )));
    }
    if params.bucket_s.is_some_and(|b| b < 2) {
        return Err(DashboardError::BadRequest(
            "bucket_s must be at least 2 (one interval)".to_owned(),
        ));
    }
    let limit = params
        .limit
        .unwrap_or(1000)
        .clamp(1, state.inner.config.max_history_limit);
    state
        .authorize_read(
            &user,
            &patient_id,
            "history_read",
            format!("{kind} [{}, {}) ns", params.from_ns, params.to_ns),
        )
        .await?;
    let query = HistoryQuery {
        patient_id: patient_id.clone(),
        from_ns: params.from_ns,
        to_ns: params.to_ns,
        limit,
        cursor: params.cursor,
    };
    let source = &state.inner.history;
    let mut out = String::with_capacity(4096);
    let _ = write!(out, r#"{{"kind":"{kind}","items":["#);
    let next_cursor = match kind.as_str() {
        "prob" => {
            let page = source.probabilities(&query).await?;
            push_items(&mut out, &page.items, live::probability_json);
            page.next_cursor
        }
        "hr" => {
            let page = source.heart_rate(&query).await?;
            push_items(&mut out, &page.items, |s| {
                serde_json::json!([live::ns_to_ms(s.t_ns), s.bpm, s.rr_ms]).to_string()
            });
            page.next_cursor
        }
        "alerts" => {
            let page = source.alerts(&query).await?;
            push_items(&mut out, &page.items, |e| {
                serde_json::to_string(&AlertEventJson::from(e)).unwrap_or_default()
            });
            page.next_cursor
        }
        "trends" => {
            let (items, next_cursor) = trends_history(&**source, query, params.bucket_s).await?;
            push_items(&mut out, &items, crate::trends::trends_json);
            next_cursor
        }
        _ => {
            // Raw EEG as stored (not display-filtered): the page labels it so.
            let page = source.eeg(&query).await?;
            push_items(&mut out, &page.items, |c| {
                live::trace_json(&EegTrace {
                    patient_id: c.patient_id.clone(),
                    stream_id: c.stream_id,
                    start_ns: c.start_ns,
                    received_ns: c.received_ns,
                    sample_rate_hz: c.sample_rate_hz,
                    channels: c.channels.clone(),
                    samples: c.samples.clone(),
                })
            });
            page.next_cursor
        }
    };
    let _ = write!(
        out,
        r#"],"next_cursor":{}}}"#,
        serde_json::to_string(&next_cursor).unwrap_or_else(|_| "null".to_owned())
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        out,
    )
        .into_response())
}

/// Most intervals one bucketed answer reads (about 55 h of 2 s intervals): bounds the work
/// of one request whatever range it names.
const MAX_BUCKETED_INTERVALS: usize = 100_000;

/// One page of trend intervals, or with `bucket_s` the whole range merged into columns.
async fn trends_history(
    source: &dyn HistorySource,
    mut query: HistoryQuery,
    bucket_s: Option<u32>,
) -> Result<(Vec<EegTrends>, Option<String>), DashboardError> {
    let Some(bucket_s) = bucket_s else {
        let page = source.trends(&query).await?;
        return Ok((page.items, page.next_cursor));
    };
    let mut all = Vec::new();
    loop {
        let page = source.trends(&query).await?;
        all.extend(page.items);
        match page.next_cursor {
            Some(next) if all.len() < MAX_BUCKETED_INTERVALS => query.cursor = Some(next),
            Some(_) => {
                return Err(DashboardError::BadRequest(format!(
                    "more than {MAX_BUCKETED_INTERVALS} trend intervals in the range: ask for a shorter one"
                )))
            }
            None => break,
        }
    }
    let bucket_ns = i64::from(bucket_s) * 1_000_000_000;
    Ok((crate::trends::bucket(&all, query.from_ns, bucket_ns), None))
}

async fn acknowledge(
    State(state): State<DashboardState>,
    headers: HeaderMap,
    Path((patient_id, alert_id)): Path<(String, String)>,
) -> Result<Response, DashboardError> {
    let (user, session) = state.authenticate(&headers).await?;
    check_csrf(&state, &session, &headers)?;
    if !crate::directory::may_acknowledge(user.role) {
        return Err(DashboardError::Forbidden(format!(
            "only clinicians acknowledge alerts; {} is {:?}",
            user.username, user.role
        )));
    }
    let alert_id: Uuid = alert_id
        .parse()
        .map_err(|_| DashboardError::BadRequest(format!("{alert_id:?} is not an alert id")))?;
    state.authorize(&user, &patient_id).await?;
    let hub = &state.inner.hub;
    let alert = hub.begin_ack(&patient_id, alert_id).map_err(|r| match r {
        AckRefusal::Unknown(_) => DashboardError::NotFound(r.to_string()),
        _ => DashboardError::Conflict(r.to_string()),
    })?;
    let event = AlertEvent {
        alert_id,
        patient_id: patient_id.clone(),
        kind: alert.kind,
        transition: AlertTransition::Acknowledged,
        onset_ns: alert.onset_ns,
        at_ns: vigil_core::time::now_ns(),
        by: Some(user.username.clone()),
        evidence: AlertEvidence::default(),
    };
    if let Err(err) = event.validate(&RecordLimits::default()) {
        hub.end_ack(&patient_id, alert_id);
        return Err(DashboardError::Conflict(format!(
            "cannot record the acknowledgement: {err}"
        )));
    }
    let timeout = Duration::from_secs(10);
    let published = tokio::time::timeout(
        timeout,
        state
            .inner
            .bus
            .publish_record(Topic::Alerts, &patient_id, &event),
    )
    .await
    .unwrap_or(Err(vigil_core::bus::BusError::Timeout {
        op: "publish acknowledgement",
        after: timeout,
    }));
    if let Err(err) = published {
        hub.end_ack(&patient_id, alert_id);
        return Err(err.into());
    }
    let detail = format!("alert {alert_id} ({:?}) acknowledged", alert.kind);
    if let Err(err) = state
        .audit(&user, &patient_id, "acknowledge_alert", detail)
        .await
    {
        // The acknowledgement is on the bus (the clinical act happened); the missing audit
        // row must be investigated.
        tracing::error!(%err, %alert_id, "acknowledgement published but not audited");
    }
    AlertAcknowledged {
        patient_id: &patient_id,
        alert_id,
        by: &user.username,
    }
    .emit();
    Ok(Json(serde_json::json!({ "acknowledged": AlertEventJson::from(&event) })).into_response())
}
