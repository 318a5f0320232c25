//! The gateway's error type and its one HTTP rendering: RFC 9457 `application/problem+json`.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use vigil_core::bus::BusError;
use vigil_core::codec::CodecError;

use crate::devices::DirectoryError;

pub use vigil_core::problem::{Problem, PROBLEM_JSON};

/// Everything that can refuse a record. Each variant maps to one HTTP status and one
/// `reason` label for the `vigil_ingest_rejected_total` metric.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No `Authorization: Bearer` header, or a token that is unknown or revoked.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The record names a patient or device other than the token's device.
    #[error("{field} {found:?} does not match the authenticated device ({expected:?})")]
    Forbidden {
        /// `patient_id` or `device_id`.
        field: &'static str,
        /// Value bound to the token.
        expected: String,
        /// Value in the record.
        found: String,
    },
    /// Content-Type is neither JSON nor the binary codec.
    #[error(
        "content type {0:?} is not supported: use application/json or application/vnd.vigil.record"
    )]
    UnsupportedMediaType(String),
    /// The body exceeds the configured cap.
    #[error("body exceeds the {max}-byte limit")]
    PayloadTooLarge {
        /// The cap.
        max: usize,
    },
    /// The body could not be read from the connection.
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    /// Bytes that do not parse as a record (400), or a parsed record that breaks a rule (422).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The record disagrees with what the device registered.
    #[error("{field}: the record has {found}, the device registered {registered}")]
    RegistrationMismatch {
        /// `sample_rate_hz` or `channels`.
        field: &'static str,
        /// What the device registered.
        registered: String,
        /// What the record carries.
        found: String,
    },
    /// A resend of a received `seq` whose content differs from what was produced.
    #[error(
        "seq {seq} of stream {stream_id} was already received with different content; \
         a resend must repeat the record unchanged"
    )]
    SeqConflict {
        /// Stream.
        stream_id: uuid::Uuid,
        /// Sequence number.
        seq: u64,
    },
    /// A `seq` older than the window of received seqs: whether it was received is unknown.
    #[error(
        "seq {seq} of stream {stream_id} is below the gateway's window (oldest tracked seq \
         {oldest}): it may or may not have been received before and was not produced"
    )]
    SeqBelowWindow {
        /// Stream.
        stream_id: uuid::Uuid,
        /// Sequence number.
        seq: u64,
        /// Lowest sequence number still tracked.
        oldest: u64,
    },
    /// The device exceeded its request rate.
    #[error("rate limit exceeded; retry in {} ms", retry_after.as_millis())]
    RateLimited {
        /// When a token is available again.
        retry_after: Duration,
    },
    /// The bus did not acknowledge the record; nothing is buffered, the device must retry.
    #[error("the message bus did not acknowledge the record: {source}")]
    BusUnavailable {
        /// Bus failure.
        #[source]
        source: BusError,
        /// Retry hint.
        retry_after: Duration,
    },
    /// The device directory could not be queried.
    #[error("device directory unavailable: {source}")]
    Directory {
        /// Database failure.
        #[source]
        source: DirectoryError,
        /// Retry hint.
        retry_after: Duration,
    },
}

impl IngestError {
    /// HTTP status of the error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyRead(_) => StatusCode::BAD_REQUEST,
            Self::Codec(CodecError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Codec(CodecError::Invalid { .. }) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Codec(CodecError::Encode { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Codec(_) => StatusCode::BAD_REQUEST,
            Self::RegistrationMismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::SeqConflict { .. } => StatusCode::CONFLICT,
            Self::SeqBelowWindow { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BusUnavailable { .. } | Self::Directory { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable short label (metrics, problem `type`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::PayloadTooLarge { .. } | Self::Codec(CodecError::TooLarge { .. }) => {
                "payload_too_large"
            }
            Self::BodyRead(_) => "body_read",
            Self::Codec(CodecError::Invalid { .. }) => "invalid_record",
            Self::Codec(CodecError::Encode { .. }) => "encode",
            Self::Codec(_) => "malformed_record",
            Self::RegistrationMismatch { .. } => "registration_mismatch",
            Self::SeqConflict { .. } => "seq_conflict",
            Self::SeqBelowWindow { .. } => "seq_below_window",
            Self::RateLimited { .. } => "rate_limited",
            Self::BusUnavailable { .. } => "bus_unavailable",
            Self::Directory { .. } => "directory_unavailable",
        }
    }

    /// When the client may retry, for 429 and 503.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after }
            | Self::BusUnavailable { retry_after, .. }
            | Self::Directory { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The sequence number the error is about, when the record was decoded that far.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::SeqConflict { seq, .. } | Self::SeqBelowWindow { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            retry_after_s: self.retry_after().map(retry_after_secs),
            ..Problem::new(status, self.reason(), self.to_string())
        }
    }
}

/// Whole seconds for `Retry-After`, rounded up and at least 1.
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0).max(u64::from(d.is_zero()))
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let mut response = self.problem().into_response();
        let headers = response.headers_mut();
        if matches!(self, Self::Unauthorized(_)) {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"vigil-ingest\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2100)), 3);
    }
}
