//! The history API: JSON over HTTP for the dashboard and researchers.
//!
//! Every endpoint takes `Authorization: Bearer <api token>` (created by `vigil user token`).
//! Clinicians read only their assigned patients (403 otherwise); researchers and admins read
//! all. Every read of patient data first appends an audit row (who, which patient, what,
//! with which parameters), so even a read that then fails is on record. Lists are paged with
//! an opaque `cursor`: pass the previous page's `next_cursor` to continue; a walk returns
//! every row exactly once. Errors are RFC 9457 `application/problem+json`.

use std::future::Future;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use vigil_core::problem::Problem;
use vigil_core::record::{EegChunk, EegTrends, SeizureProbability};
use vigil_core::telemetry::Readiness;

use crate::error::StorageError;
use crate::fhir;
use crate::store::Store;
use crate::types::{AlertHistory, AuditEntry, HistoryQuery, HrSample, Page, PatientSummary, User};

/// Default page size when a request gives no `limit`.
pub const DEFAULT_LIMIT: u32 = 500;

/// Shared state of the API (cheap to clone).
#[derive(Clone)]
pub struct ApiState {
    /// The database.
    pub store: Store,
    /// Readiness checks served on `/readyz`.
    pub readiness: Readiness,
    /// Metrics served on `/metrics`.
    pub metrics: PrometheusHandle,
    /// Largest page (`limit` is capped to it).
    pub max_page_items: u32,
    /// Most heart-rate points in one FHIR export.
    pub max_fhir_entries: u32,
}

impl ApiState {
    /// State over `store` with the limits from `config`.
    pub fn new(
        store: Store,
        readiness: Readiness,
        config: &vigil_core::config::StorageConfig,
    ) -> Self {
        Self {
            store,
            readiness,
            metrics: vigil_core::telemetry::metrics_handle(),
            max_page_items: config.max_page_items.min(crate::types::MAX_PAGE_ITEMS),
            max_fhir_entries: config.max_fhir_entries,
        }
    }
}

/// Everything the API refuses, each with one status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No bearer token, or an unknown or revoked one.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The user may not read this patient.
    #[error("user {username:?} is not assigned to patient {patient_id:?}")]
    Forbidden {
        /// User.
        username: String,
        /// Patient.
        patient_id: String,
    },
    /// Bad parameters.
    #[error("{0}")]
    BadRequest(String),
    /// A valid request for more than the server returns at once.
    #[error("{0}")]
    TooMuch(String),
    /// The database failed.
    #[error(transparent)]
    Storage(StorageError),
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::BadQuery(m) => ApiError::BadRequest(m),
            e @ StorageError::Invalid { .. } => ApiError::BadRequest(e.to_string()),
            other => ApiError::Storage(other),
        }
    }
}

impl ApiError {
    /// The problem document.
    pub fn problem(&self) -> Problem {
        let (status, reason) = match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::TooMuch(_) => (StatusCode::UNPROCESSABLE_ENTITY, "range_too_large"),
            ApiError::Storage(e) if e.is_transient() => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
            }
            ApiError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let detail = match self {
            // Details of internal failures go to the log, not to the client.
            ApiError::Storage(e) if !e.is_transient() => {
                tracing::error!(error = %e, "history request failed");
                "internal error; see the server log".to_owned()
            }
            other => other.to_string(),
        };
        let mut problem = Problem::new(status, reason, detail);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            problem.retry_after_s = Some(2);
        }
        problem
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.problem().into_response();
        if matches!(self, ApiError::Unauthorized(_)) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"vigil-storage\""),
            );
        }
        response
    }
}

/// Query parameters of the history endpoints.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RangeParams {
    /// Start of the range, UTC ns since the Unix epoch, inclusive (default 0).
    pub from_ns: Option<i64>,
    /// End of the range, UTC ns, exclusive (default: no end).
    pub to_ns: Option<i64>,
    /// Most items on the page (default 500, capped by `storage.max_page_items`).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// EEG only: downsample to at most this rate (block mean, NaN-aware), for overviews.
    pub max_rate_hz: Option<f64>,
}

impl RangeParams {
    fn query(&self, patient_id: &str, max_limit: u32) -> HistoryQuery {
        HistoryQuery {
            patient_id: patient_id.to_owned(),
            from_ns: self.from_ns.unwrap_or(0),
            to_ns: self.to_ns.unwrap_or(i64::MAX),
            limit: self.limit.unwrap_or(DEFAULT_LIMIT).min(max_limit),
            cursor: self.cursor.clone(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "from_ns={:?} to_ns={:?} limit={:?} cursor={:?}",
            self.from_ns, self.to_ns, self.limit, self.cursor
        )
    }
}

/// A page as served (`items` + `next_cursor`).
#[derive(Debug, Serialize)]
pub struct PageBody<T> {
    /// Items in time order.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The patients listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PatientsBody {
    /// Patients visible to the caller.
    pub items: Vec<PatientSummary>,
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "missing Authorization: Bearer <api token>",
        ))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::Unauthorized(
            "Authorization must be `Bearer <api token>`",
        )),
    }
}

impl ApiState {
    /// The user holding the request's token.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<User, ApiError> {
        let token = bearer(headers)?;
        self.store
            .authenticate_token(token)
            .await?
            .ok_or(ApiError::Unauthorized("unknown or revoked api token"))
    }

    /// Authenticates, checks access to `patient_id` and writes the audit row.
    pub async fn authorize_read(
        &self,
        headers: &HeaderMap,
        patient_id: &str,
        action: &str,
        detail: String,
    ) -> Result<User, ApiError> {
        let user = self.authenticate(headers).await?;
        crate::auth::check_identifier("patient_id", patient_id)?;
        if !self.store.may_read(&user, patient_id).await? {
            return Err(ApiError::Forbidden {
                username: user.username,
                patient_id: patient_id.to_owned(),
            });
        }
        self.store
            .audit(&AuditEntry {
                user_id: user.id,
                patient_id: patient_id.to_owned(),
                action: action.to_owned(),
                detail,
            })
            .await?;
        Ok(user)
    }
}

fn params(
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<RangeParams>, QueryRejection>,
) -> Result<(String, RangeParams), ApiError> {
    let Path(patient_id) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let Query(params) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    Ok((patient_id, params))
}

/// One history endpoint: what its reads are audited as and which pages of the store it
/// serves. Every endpoint authorizes, audits and pages the same way, in [`history`].
trait History {
    /// What a page holds.
    type Item: Serialize;
    /// The audit log's action.
    const ACTION: &'static str;

    /// One page of the store.
    fn fetch(
        store: &Store,
        q: &HistoryQuery,
    ) -> impl Future<Output = Result<Page<Self::Item>, StorageError>> + Send;

    /// Checks the endpoint's own parameters; the audit detail.
    fn detail(params: &RangeParams) -> Result<String, ApiError> {
        Ok(params.describe())
    }

    /// The items as served.
    fn shape(items: Vec<Self::Item>, _params: &RangeParams) -> Vec<Self::Item> {
        items
    }
}

/// Authorizes the caller for the patient, audits the read (before it runs, so a failing read
/// is on record too) and serves one page.
async fn history<H: History>(
    state: ApiState,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<PageBody<H::Item>>, ApiError> {
    let (patient_id, params) = params(path, query)?;
    let detail = H::detail(&params)?;
    state
        .authorize_read(&headers, &patient_id, H::ACTION, detail)
        .await?;
    let page = H::fetch(
        &state.store,
        &params.query(&patient_id, state.max_page_items),
    )
    .await?;
    Ok(Json(PageBody {
        items: H::shape(page.items, &params),
        next_cursor: page.next_cursor,
    }))
}

struct EegHistory;

impl History for EegHistory {
    type Item = EegChunk;
    const ACTION: &'static str = "read_eeg";

    fn fetch(
        store: &Store,
        q: &HistoryQuery,
    ) -> impl Future<Output = Result<Page<EegChunk>, StorageError>> + Send {
        store.eeg(q)
    }

    fn detail(params: &RangeParams) -> Result<String, ApiError> {
        if let Some(rate) = params.max_rate_hz {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(ApiError::BadRequest(format!(
                    "max_rate_hz must be positive, got {rate}"
                )));
            }
        }
        Ok(format!(
            "{} max_rate_hz={:?}",
            params.describe(),
            params.max_rate_hz
        ))
    }

    fn shape(items: Vec<EegChunk>, params: &RangeParams) -> Vec<EegChunk> {
        match params.max_rate_hz {
            Some(rate) => items.into_iter().map(|c| downsample(c, rate)).collect(),
            None => items,
        }
    }
}

struct HrHistory;

impl History for HrHistory {
    type Item = HrSample;
    const ACTION: &'static str = "read_hr";

    fn fetch(
        store: &Store,
        q: &HistoryQuery,
    ) -> impl Future<Output = Result<Page<HrSample>, StorageError>> + Send {
        store.heart_rate(q)
    }
}

struct ProbabilityHistory;

impl History for ProbabilityHistory {
    type Item = SeizureProbability;
    const ACTION: &'static str = "read_probabilities";

    fn fetch(
        store: &Store,
        q: &HistoryQuery,
    ) -> impl Future<Output = Result<Page<SeizureProbability>, StorageError>> + Send {
        store.probabilities(q)
    }
}

struct TrendsHistory;

impl History for TrendsHistory {
    type Item = EegTrends;
    const ACTION: &'static str = "read_trends";

    fn fetch(
        store: &Store,
        q: &HistoryQuery,
    ) -> impl Future<Output = Result<Page<EegTrends>, StorageError>> + Send {
        store.trends(q)
    }
}

struct AlertsHistory;

impl History for AlertsHistory {
    type Item = AlertHistory;
    const ACTION: &'static str = "read_alerts";

    fn fetch(
        store: &Store,
        q: &HistoryQuery,
    ) -> impl Future<Output = Result<Page<AlertHistory>, StorageError>> + Send {
        store.alerts(q)
    }
}

/// Downsamples a chunk to at most `max_rate_hz` by NaN-aware block means of
/// `k = ceil(rate / max_rate)` samples (a boxcar anti-alias filter: fine for overviews, not
/// for analysis). A block with no finite sample stays NaN (missing).
pub fn downsample(chunk: EegChunk, max_rate_hz: f64) -> EegChunk {
    let factor = (chunk.sample_rate_hz / max_rate_hz).ceil();
    if !(factor.is_finite() && factor > 1.0) {
        return chunk;
    }
    let k = factor as usize;
    let samples = chunk
        .samples
        .iter()
        .map(|row| {
            row.chunks(k)
                .map(|block| {
                    let (sum, n) = block
                        .iter()
                        .filter(|x| x.is_finite())
                        .fold((0.0_f64, 0_u32), |(s, n), x| (s + f64::from(*x), n + 1));
                    if n == 0 {
                        f32::NAN
                    } else {
                        (sum / f64::from(n)) as f32
                    }
                })
                .collect()
        })
        .collect();
    EegChunk {
        samples,
        sample_rate_hz: chunk.sample_rate_hz / factor,
        ..chunk
    }
}

/// Lists the patients the caller may read.
#[utoipa::path(
    get,
    path = "/v1/patients",
    tag = "history",
    responses(
        (status = 200, description = "Patients visible to the caller", body = PatientsBody),
        (status = 401, description = "Missing, unknown or revoked token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_patients(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<PatientsBody>, ApiError> {
    let user = state.authenticate(&headers).await?;
    state
        .store
        .audit(&AuditEntry {
            user_id: user.id,
            patient_id: "*".to_owned(),
            action: "list_patients".to_owned(),
            detail: String::new(),
        })
        .await?;
    Ok(Json(PatientsBody {
        items: state.store.patients(&user).await?,
    }))
}

/// EEG chunks overlapping the range, decoded (NaN samples as `null`).
#[utoipa::path(
    get,
    path = "/v1/patients/{patient_id}/eeg",
    tag = "history",
    params(("patient_id" = String, Path, description = "Patient id"), RangeParams),
    responses(
        (status = 200, description = "Page of EegChunk records: {items, next_cursor}", body = serde_json::Value),
        (status = 400, description = "Bad range, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, unknown or revoked token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Patient not assigned to this clinician", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable (see Retry-After)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn eeg(
    State(state): State<ApiState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<PageBody<EegChunk>>, ApiError> {
    history::<EegHistory>(state, headers, path, query).await
}

/// Heart-rate points in the range.
#[utoipa::path(
    get,
    path = "/v1/patients/{patient_id}/hr",
    tag = "history",
    params(("patient_id" = String, Path, description = "Patient id"), RangeParams),
    responses(
        (status = 200, description = "Page of {t_ns, bpm, rr_ms, source, stream_id, seq}", body = serde_json::Value),
        (status = 400, description = "Bad range, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, unknown or revoked token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Patient not assigned to this clinician", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn heart_rate(
    State(state): State<ApiState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<PageBody<HrSample>>, ApiError> {
    history::<HrHistory>(state, headers, path, query).await
}

/// Seizure probabilities in the range, regrouped into records of contiguous 0.5 s points
/// (`null` = not evaluated). `limit` counts points.
#[utoipa::path(
    get,
    path = "/v1/patients/{patient_id}/probabilities",
    tag = "history",
    params(("patient_id" = String, Path, description = "Patient id"), RangeParams),
    responses(
        (status = 200, description = "Page of SeizureProbability records", body = serde_json::Value),
        (status = 400, description = "Bad range, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, unknown or revoked token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Patient not assigned to this clinician", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn probabilities(
    State(state): State<ApiState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<PageBody<SeizureProbability>>, ApiError> {
    history::<ProbabilityHistory>(state, headers, path, query).await
}

/// qEEG trend intervals (docs/TRENDS.md) starting in the range: regional CSA, asymmetry,
/// aEEG margins and burst suppression per 2 s (`null` = not evaluated). `limit` counts
/// intervals.
#[utoipa::path(
    get,
    path = "/v1/patients/{patient_id}/trends",
    tag = "history",
    params(("patient_id" = String, Path, description = "Patient id"), RangeParams),
    responses(
        (status = 200, description = "Page of EegTrends records", body = serde_json::Value),
        (status = 400, description = "Bad range, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, unknown or revoked token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Patient not assigned to this clinician", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn trends(
    State(state): State<ApiState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<PageBody<EegTrends>>, ApiError> {
    history::<TrendsHistory>(state, headers, path, query).await
}

/// Alerts active in the range, each with all its transitions.
#[utoipa::path(
    get,
    path = "/v1/patients/{patient_id}/alerts",
    tag = "history",
    params(("patient_id" = String, Path, description = "Patient id"), RangeParams),
    responses(
        (status = 200, description = "Page of alerts with their events", body = serde_json::Value),
        (status = 400, description = "Bad range, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, unknown or revoked token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Patient not assigned to this clinician", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn alerts(
    State(state): State<ApiState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<PageBody<AlertHistory>>, ApiError> {
    history::<AlertsHistory>(state, headers, path, query).await
}

/// FHIR R4 export: heart rate (LOINC 8867-4) and seizure alerts as Observations in one
/// `Bundle` of type `collection`.
#[utoipa::path(
    get,
    path = "/v1/patients/{patient_id}/fhir",
    tag = "fhir",
    params(("patient_id" = String, Path, description = "Patient id"), RangeParams),
    responses(
        (status = 200, description = "FHIR R4 Bundle (application/fhir+json)", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 400, description = "Bad range", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, unknown or revoked token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Patient not assigned to this clinician", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "More heart-rate points than storage.max_fhir_entries: narrow the range", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn fhir_export(
    State(state): State<ApiState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (patient_id, params) = params(path, query)?;
    if params.cursor.is_some() || params.limit.is_some() {
        return Err(ApiError::BadRequest(
            "the FHIR export takes only from_ns and to_ns".to_owned(),
        ));
    }
    state
        .authorize_read(&headers, &patient_id, "fhir_export", params.describe())
        .await?;
    let bundle = fhir::export(
        &state.store,
        &params.query(&patient_id, 1),
        state.max_fhir_entries,
    )
    .await
    .map_err(|e| match e {
        fhir::ExportError::TooManyPoints { max } => ApiError::TooMuch(format!(
            "the range holds more than {max} heart-rate points; narrow from_ns/to_ns"
        )),
        fhir::ExportError::Storage(e) => e.into(),
    })?;
    let mut response = Json(bundle).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json"),
    );
    Ok(response)
}

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

/// The history API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vigil history API",
        description = "History of EEG, heart rate, seizure probabilities, qEEG trends and alerts, and a FHIR R4 export. See docs/STORAGE.md."
    ),
    paths(list_patients, eeg, heart_rate, probabilities, trends, alerts, fhir_export),
    components(schemas(Problem, PatientsBody, PatientSummary)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

async fn openapi_json() -> Response {
    Json(ApiDoc::openapi()).into_response()
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

/// The storage server's router: history + FHIR API, `/openapi.json`, and the ops endpoints
/// (`/healthz`, `/readyz`, `/metrics`).
pub fn app(state: ApiState) -> Router {
    let ops = vigil_core::telemetry::ops_router(state.readiness.clone(), state.metrics.clone());
    Router::new()
        .route("/v1/patients", get(list_patients))
        .route("/v1/patients/{patient_id}/eeg", get(eeg))
        .route("/v1/patients/{patient_id}/hr", get(heart_rate))
        .route(
            "/v1/patients/{patient_id}/probabilities",
            get(probabilities),
        )
        .route("/v1/patients/{patient_id}/trends", get(trends))
        .route("/v1/patients/{patient_id}/alerts", get(alerts))
        .route("/v1/patients/{patient_id}/fhir", get(fhir_export))
        .route("/openapi.json", get(openapi_json))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
        .merge(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_averages_blocks_and_keeps_gaps() {
        let chunk = EegChunk {
            patient_id: "p".into(),
            device_id: "d".into(),
            stream_id: uuid::Uuid::nil(),
            seq: 0,
            start_ns: 0,
            received_ns: 0,
            sample_rate_hz: 256.0,
            channels: vec!["Cz".into()],
            unit: Default::default(),
            samples: vec![vec![1.0, 3.0, f32::NAN, f32::NAN, 5.0, f32::NAN, 7.0]],
        };
        let out = downsample(chunk.clone(), 128.0);
        assert_eq!(out.sample_rate_hz, 128.0);
        assert_eq!(out.samples[0].len(), 4);
        assert_eq!(out.samples[0][0], 2.0);
        assert!(
            out.samples[0][1].is_nan(),
            "all-missing block stays missing"
        );
        assert_eq!(out.samples[0][2], 5.0);
        assert_eq!(out.samples[0][3], 7.0);
        let same = downsample(chunk, 512.0);
        assert_eq!(
            (same.sample_rate_hz, same.samples[0].len()),
            (256.0, 7),
            "no upsampling"
        );
    }
}
