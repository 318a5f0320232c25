//! The one versioned binary codec, and JSON, for every record.
//!
//! Binary frame: `"VG"` magic, wire version (1), record kind, then the postcard body. Float
//! blocks inside the body are raw little-endian f32 (see [`crate::serde_fields`]). Decoding
//! checks the size cap before anything else, refuses trailing bytes, and validates the record,
//! so whatever a decoder returns satisfies the record's invariants. Decoders never panic on any
//! input (fuzzed in `core/tests/codec_fuzz.rs`).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::record::{
    AlertEvent, DeadLetter, EegChunk, EegTrace, EegTrends, HrBatch, ProvisionalProbability,
    RecordLimits, SeizureProbability, Validate, ValidationError,
};

/// First two bytes of every binary record.
pub const MAGIC: [u8; 2] = *b"VG";
/// Current wire version. Decoders refuse others with [`CodecError::UnsupportedVersion`].
pub const WIRE_VERSION: u8 = 1;
/// Header length: magic, version, kind.
pub const HEADER_LEN: usize = 4;
/// Default cap on one encoded record (fits Kafka's default 1 MiB message limit).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Record type tag in the binary header. New kinds may be added within a wire version
/// (older readers refuse them as unknown); changing an existing layout needs a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// [`EegChunk`].
    EegChunk = 1,
    /// [`HrBatch`].
    HrBatch = 2,
    /// [`SeizureProbability`].
    SeizureProbability = 3,
    /// [`AlertEvent`].
    AlertEvent = 4,
    /// [`DeadLetter`].
    DeadLetter = 5,
    /// [`EegTrace`].
    EegTrace = 6,
    /// [`EegTrends`].
    EegTrends = 7,
    /// [`ProvisionalProbability`]: shares `vigil.eeg.prob` with final values, and readers
    /// built before it refuse it as an unknown kind instead of taking it for a final one.
    ProvisionalProbability = 8,
}

impl RecordKind {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::EegChunk,
            2 => Self::HrBatch,
            3 => Self::SeizureProbability,
            4 => Self::AlertEvent,
            5 => Self::DeadLetter,
            6 => Self::EegTrace,
            7 => Self::EegTrends,
            8 => Self::ProvisionalProbability,
            _ => return None,
        })
    }

    /// Name used in logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Self::EegChunk => "EegChunk",
            Self::HrBatch => "HrBatch",
            Self::SeizureProbability => "SeizureProbability",
            Self::AlertEvent => "AlertEvent",
            Self::DeadLetter => "DeadLetter",
            Self::EegTrace => "EegTrace",
            Self::EegTrends => "EegTrends",
            Self::ProvisionalProbability => "ProvisionalProbability",
        }
    }
}

/// Why bytes could not become a record.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Input larger than the configured cap; nothing was parsed.
    #[error("record of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Input length.
        len: usize,
        /// Cap.
        max: usize,
    },
    /// Shorter than the header.
    #[error("record of {0} bytes is shorter than the {HEADER_LEN}-byte header")]
    Truncated(usize),
    /// Not a Vigil record.
    #[error("bad magic {0:02x?}: not a Vigil binary record")]
    BadMagic([u8; 2]),
    /// Written by an incompatible version.
    #[error("wire version {0} is not supported (this build reads version {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    /// Unknown kind byte.
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    /// A record of another kind where a specific one was expected.
    #[error("expected a {expected} record, got {found}")]
    WrongKind {
        /// Kind wanted.
        expected: &'static str,
        /// Kind found.
        found: &'static str,
    },
    /// The body does not parse.
    #[error("malformed {kind} body: {reason}")]
    Body {
        /// Kind being decoded.
        kind: &'static str,
        /// Parser message.
        reason: String,
    },
    /// Bytes after a complete body.
    #[error("{0} unexpected bytes after the record body")]
    TrailingBytes(usize),
    /// JSON that does not parse into the record.
    #[error("malformed {kind} JSON: {reason}")]
    Json {
        /// Kind being decoded.
        kind: &'static str,
        /// Parser message (with line and column).
        reason: String,
    },
    /// Parsed, but breaks a record rule.
    #[error("invalid {kind}: {source}")]
    Invalid {
        /// Kind being decoded.
        kind: &'static str,
        /// The rule broken.
        #[source]
        source: ValidationError,
    },
    /// The record could not be encoded (a bug or an unrepresentable value).
    #[error("cannot encode {kind}: {reason}")]
    Encode {
        /// Kind being encoded.
        kind: &'static str,
        /// Serializer message.
        reason: String,
    },
}

/// A record type that travels on the bus.
pub trait Record: Serialize + DeserializeOwned + Validate {
    /// Its tag in the binary header.
    const KIND: RecordKind;
}

impl Record for EegChunk {
    const KIND: RecordKind = RecordKind::EegChunk;
}
impl Record for HrBatch {
    const KIND: RecordKind = RecordKind::HrBatch;
}
impl Record for SeizureProbability {
    const KIND: RecordKind = RecordKind::SeizureProbability;
}
impl Record for AlertEvent {
    const KIND: RecordKind = RecordKind::AlertEvent;
}
impl Record for DeadLetter {
    const KIND: RecordKind = RecordKind::DeadLetter;
}
impl Record for EegTrace {
    const KIND: RecordKind = RecordKind::EegTrace;
}
impl Record for EegTrends {
    const KIND: RecordKind = RecordKind::EegTrends;
}
impl Record for ProvisionalProbability {
    const KIND: RecordKind = RecordKind::ProvisionalProbability;
}

/// Decoding settings: size cap and record limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeLimits {
    /// Largest input accepted, in bytes.
    pub max_record_bytes: usize,
    /// Limits on record contents.
    pub record: RecordLimits,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            record: RecordLimits::default(),
        }
    }
}

/// Encodes a record in the binary wire format.
pub fn encode<R: Record>(record: &R) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&MAGIC);
    out.push(WIRE_VERSION);
    out.push(R::KIND as u8);
    postcard::to_io(record, &mut out).map_err(|e| CodecError::Encode {
        kind: R::KIND.name(),
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// Reads the header, returning the record kind. Checks the size cap first.
pub fn peek_kind(bytes: &[u8], limits: &DecodeLimits) -> Result<RecordKind, CodecError> {
    if bytes.len() > limits.max_record_bytes {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max: limits.max_record_bytes,
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(CodecError::Truncated(bytes.len()));
    }
    if bytes[..2] != MAGIC {
        return Err(CodecError::BadMagic([bytes[0], bytes[1]]));
    }
    if bytes[2] != WIRE_VERSION {
        return Err(CodecError::UnsupportedVersion(bytes[2]));
    }
    RecordKind::from_byte(bytes[3]).ok_or(CodecError::UnknownKind(bytes[3]))
}

fn checked<R: Record>(record: R, limits: &DecodeLimits) -> Result<R, CodecError> {
    record
        .validate(&limits.record)
        .map_err(|source| CodecError::Invalid {
            kind: R::KIND.name(),
            source,
        })?;
    Ok(record)
}

/// Decodes and validates one binary record of type `R`.
pub fn decode<R: Record>(bytes: &[u8], limits: &DecodeLimits) -> Result<R, CodecError> {
    let kind = peek_kind(bytes, limits)?;
    if kind != R::KIND {
        return Err(CodecError::WrongKind {
            expected: R::KIND.name(),
            found: kind.name(),
        });
    }
    let (record, rest) =
        postcard::take_from_bytes::<R>(&bytes[HEADER_LEN..]).map_err(|e| CodecError::Body {
            kind: R::KIND.name(),
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes(rest.len()));
    }
    checked(record, limits)
}

/// Encodes a record as JSON (NaN as `null`).
pub fn to_json<R: Record>(record: &R) -> Result<Vec<u8>, CodecError> {
    serde_json::to_vec(record).map_err(|e| CodecError::Encode {
        kind: R::KIND.name(),
        reason: e.to_string(),
    })
}

/// Decodes and validates one JSON record of type `R` (`null` samples read as NaN).
pub fn from_json<R: Record>(bytes: &[u8], limits: &DecodeLimits) -> Result<R, CodecError> {
    if bytes.len() > limits.max_record_bytes {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max: limits.max_record_bytes,
        });
    }
    let record = serde_json::from_slice::<R>(bytes).map_err(|e| CodecError::Json {
        kind: R::KIND.name(),
        reason: e.to_string(),
    })?;
    checked(record, limits)
}

/// Any record, for consumers of mixed streams (the DLQ auditor, debugging tools).
#[derive(Debug, Clone, PartialEq)]
pub enum AnyRecord {
    /// An EEG chunk.
    EegChunk(EegChunk),
    /// A heart-rate batch.
    HrBatch(HrBatch),
    /// Seizure probabilities.
    SeizureProbability(SeizureProbability),
    /// An alert transition.
    AlertEvent(AlertEvent),
    /// A dead letter.
    DeadLetter(DeadLetter),
    /// A display trace.
    EegTrace(EegTrace),
    /// qEEG trends of one interval.
    EegTrends(EegTrends),
    /// A provisional lower bound of seizure probabilities.
    ProvisionalProbability(ProvisionalProbability),
}

/// A record of `vigil.eeg.prob`: final values, or the provisional lower bound published ahead
/// of them (the topic carries both kinds).
#[derive(Debug, Clone, PartialEq)]
pub enum ProbabilityRecord {
    /// Final values: the record.
    Final(SeizureProbability),
    /// The lower bound of points not final yet.
    Provisional(ProvisionalProbability),
}

/// Decodes a record of `vigil.eeg.prob` by the kind its header names; any kind other than the
/// two is refused as not a [`SeizureProbability`].
pub fn decode_probability(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<ProbabilityRecord, CodecError> {
    Ok(match peek_kind(bytes, limits)? {
        RecordKind::ProvisionalProbability => {
            ProbabilityRecord::Provisional(decode(bytes, limits)?)
        }
        _ => ProbabilityRecord::Final(decode(bytes, limits)?),
    })
}

/// Decodes whichever record the header names.
pub fn decode_any(bytes: &[u8], limits: &DecodeLimits) -> Result<AnyRecord, CodecError> {
    Ok(match peek_kind(bytes, limits)? {
        RecordKind::EegChunk => AnyRecord::EegChunk(decode(bytes, limits)?),
        RecordKind::HrBatch => AnyRecord::HrBatch(decode(bytes, limits)?),
        RecordKind::SeizureProbability => AnyRecord::SeizureProbability(decode(bytes, limits)?),
        RecordKind::AlertEvent => AnyRecord::AlertEvent(decode(bytes, limits)?),
        RecordKind::DeadLetter => AnyRecord::DeadLetter(decode(bytes, limits)?),
        RecordKind::EegTrace => AnyRecord::EegTrace(decode(bytes, limits)?),
        RecordKind::EegTrends => AnyRecord::EegTrends(decode(bytes, limits)?),
        RecordKind::ProvisionalProbability => {
            AnyRecord::ProvisionalProbability(decode(bytes, limits)?)
        }
    })
}
