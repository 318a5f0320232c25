//! RFC 9457 problem details (`application/problem+json`): the one error body every Vigil HTTP
//! server returns. Each server keeps its own error enum and renders it through [`Problem`].

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Base of every problem `type` URI; the reason label is appended.
pub const PROBLEM_TYPE_BASE: &str = "https://vigil.invalid/problems/";

/// RFC 9457 problem details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// URI naming the problem type.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary (the HTTP reason phrase).
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What exactly was wrong, naming the field.
    pub detail: String,
    /// Seconds to wait before retrying (429, 503), also sent as `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

impl Problem {
    /// A problem with `status`, a stable `reason` label (becomes the `type` URI) and `detail`.
    pub fn new(status: StatusCode, reason: &str, detail: impl Into<String>) -> Self {
        Self {
            problem_type: format!("{PROBLEM_TYPE_BASE}{reason}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            retry_after_s: None,
        }
    }

    /// The HTTP status (500 if the stored code is not a valid status).
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    /// Logs the detail (warn for 5xx, info otherwise) and returns the JSON body with the
    /// problem media type and `Retry-After` when set.
    fn into_response(self) -> Response {
        if self.status >= 500 {
            tracing::warn!(status = self.status, detail = %self.detail, "request failed");
        } else {
            tracing::info!(status = self.status, detail = %self.detail, "request refused");
        }
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (self.status_code(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_problem_json_with_retry_after() {
        let mut problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "db_down", "database");
        problem.retry_after_s = Some(3);
        let response = problem.clone().into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let parsed: Problem = serde_json::from_slice(&body).expect("json");
        assert_eq!(parsed, problem);
        assert_eq!(
            parsed.problem_type,
            "https://vigil.invalid/problems/db_down"
        );
        assert_eq!(parsed.title, "Service Unavailable");
    }
}
