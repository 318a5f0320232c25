//! The dashboard's error type and its one HTTP rendering: RFC 9457 `application/problem+json`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use vigil_core::bus::BusError;
pub use vigil_core::problem::{Problem, PROBLEM_JSON};

use crate::directory::DirectoryError;

/// Everything a dashboard request can fail with. Each variant maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// No valid session (or wrong credentials at login).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Authenticated, but not allowed: unassigned patient, wrong role, bad CSRF token.
    #[error("{0}")]
    Forbidden(String),
    /// No such alert or resource.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (an alert already acknowledged).
    #[error("{0}")]
    Conflict(String),
    /// A malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// A request body that is not JSON.
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    /// The clinical database failed.
    #[error("clinical database unavailable: {0}")]
    Directory(#[from] DirectoryError),
    /// The bus did not take the acknowledgement: nothing was acknowledged.
    #[error("the message bus did not take the acknowledgement: {0}")]
    Bus(#[from] BusError),
}

impl DashboardError {
    /// HTTP status of the error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Directory(_) | Self::Bus(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable short label (problem `type`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::BadRequest(_) => "bad_request",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Directory(_) => "database_unavailable",
            Self::Bus(_) => "bus_unavailable",
        }
    }

    /// The problem document. Server-side failures get a generic detail; the cause is logged.
    pub fn problem(&self) -> Problem {
        let detail = match self {
            Self::Directory(_) => "the clinical database is unavailable; try again".to_owned(),
            Self::Bus(_) => {
                "the message bus did not take the request; nothing was changed, try again"
                    .to_owned()
            }
            other => other.to_string(),
        };
        let mut problem = Problem::new(self.status(), self.reason(), detail);
        if matches!(self, Self::Directory(_) | Self::Bus(_)) {
            problem.retry_after_s = Some(2);
        }
        problem
    }
}

impl IntoResponse for DashboardError {
    fn into_response(self) -> Response {
        if matches!(self, Self::Directory(_) | Self::Bus(_)) {
            tracing::warn!(error = %self, "dashboard request failed");
        }
        let mut response = self.problem().into_response();
        if matches!(self, Self::Unauthorized(_)) {
            // Not a Bearer realm: the browser logs in through the page.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Cookie realm=\"vigil-dashboard\""),
            );
        }
        response
    }
}
