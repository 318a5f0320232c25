//! # vigil-lsl
//!
//! `vigil lsl`: Lab Streaming Layer outlets (research amplifiers, heart-rate sensors) into the
//! ingest gateway, through the same acknowledged WebSocket client as `vigil replay`
//! ([`vigil_ingest::client::IngestClient`]). See docs/LSL.md.
//!
//! - [`meta`]: a stream's rate, labels and units from its description, and what is refused;
//! - [`clock`]: LSL timestamps to UTC with the inlet's `time_correction`, and the error bound;
//! - [`chunker`]: samples into `EegChunk`s / `HrBatch`es with the gateway's gap rules;
//! - [`LslBridge`]: configured streams -> one inlet thread (liblsl blocks and is not `Send`)
//!   and one gateway client each.

mod bridge;
pub mod chunker;
pub mod clock;
mod error;
mod inlet;
pub mod meta;

use std::collections::VecDeque;

pub use bridge::{LslBridge, RunningBridge};
pub use chunker::ChunkerCounts;
pub use error::LslError;
pub use meta::StreamDesc;
use vigil_ingest::client::ClientStats;

/// One configured stream's counters.
#[derive(Debug, Clone, Default)]
pub struct StreamStats {
    /// The stream's key in `[lsl.streams]`.
    pub key: String,
    /// The LSL stream it is attached to (`None` before it was found).
    pub stream: Option<StreamDesc>,
    /// Inlets opened (more than one after the stream was lost and found again).
    pub inlets_opened: u64,
    /// Samples pulled from LSL.
    pub samples: u64,
    /// Gap filling, new streams, dropped heart-rate points.
    pub counts: ChunkerCounts,
    /// Records handed to the gateway client.
    pub records_sent: u64,
    /// Records without a final reply when the bridge stopped.
    pub unacknowledged: u64,
    /// The client's counters (accepted, duplicates, reconnects, ...).
    pub client: ClientStats,
    /// The inlet's latest `time_correction`, in s.
    pub correction_s: f64,
    /// Bound on the error of the UTC times sent (correction uncertainty + clock reads), the
    /// largest of the run, in ns.
    pub time_error_ns: i64,
    /// Seconds from the LSL push of a record's last sample to the gateway's acknowledgement
    /// (the newest 100 000 records).
    pub latencies_s: VecDeque<f64>,
}

/// The LSL streams visible on the network within `wait` (blocks; call it off the async
/// runtime), for `vigil lsl --list`.
pub fn list_streams(wait: std::time::Duration) -> Result<Vec<StreamDesc>, LslError> {
    let mut found = lsl::resolve_streams(wait.as_secs_f64())?;
    Ok(found.iter_mut().map(inlet::describe).collect())
}
