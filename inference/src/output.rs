//! Pipelined publishing with exact offsets.
//!
//! Outputs are published by *lanes*: a patient's outputs always go through the same lane, which
//! publishes them one after the other, so they reach the broker in the order they were made
//! (per key order holds without waiting for anything else). Lanes run concurrently, so one
//! patient's broker round trip never holds up another's, and each lane's queue is bounded, which
//! stops the shards (and so the consumer) when the broker falls behind.
//!
//! Every input record gets a ticket. A ticket is done once the last output batch that carries
//! it is delivered; since a lane publishes in order, all of the record's earlier outputs (its
//! trace) were delivered before. The stage runner's `OffsetTracker` then advances a partition's offset only over
//! its contiguous prefix of done records, so a commit never skips a record whose outputs are
//! still in flight, on either bus backend.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use tokio::sync::mpsc;
use vigil_core::bus::{Bus, BusError, Topic};
use vigil_core::codec::{self, Record};
use vigil_core::stage::Completions;
use vigil_core::CancellationToken;

pub(crate) use vigil_core::stage::Ticket;

/// Encoded outputs of one patient, published in order; `ticket` is done once they are all on
/// the broker.
#[derive(Debug)]
pub(crate) struct OutputBatch {
    /// Partition key.
    pub patient_id: String,
    /// `(topic, encoded record)` in publish order.
    pub records: Vec<(Topic, Vec<u8>)>,
    /// The input record these outputs complete, if any.
    pub ticket: Option<Ticket>,
}

/// Encodes an output record for a lane. A record that cannot be encoded (a bug, never the
/// data's fault) is logged and skipped rather than holding the patient's lane.
pub(crate) fn encode<R: Record>(topic: Topic, record: &R) -> Option<(Topic, Vec<u8>)> {
    match codec::encode(record) {
        Ok(bytes) => Some((topic, bytes)),
        Err(err) => {
            tracing::error!(%err, ?topic, "output record not encodable; skipped");
            None
        }
    }
}

/// Senders to the publishing lanes; cheap to clone (shards and the dispatcher each hold one).
#[derive(Clone)]
pub(crate) struct Lanes {
    lanes: Vec<mpsc::Sender<OutputBatch>>,
}

/// Batches a lane may hold before its senders wait.
const LANE_DEPTH: usize = 64;
/// Longest pause between publish retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Stable lane (or shard) index of a patient: the same patient always lands on the same one.
pub(crate) fn route(patient_id: &str, n: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    patient_id.hash(&mut hasher);
    (hasher.finish() % n.max(1) as u64) as usize
}

impl Lanes {
    /// Starts `n` lanes publishing on `bus`; done tickets go to `done`. Lanes stop when every
    /// sender is dropped (after publishing what they hold), or when a publish fails after
    /// `shutdown` (the ticket is then not done, and its record is redelivered after a restart).
    pub(crate) fn spawn(
        bus: &Bus,
        n: usize,
        done: Completions,
        shutdown: &CancellationToken,
    ) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let (lanes, tasks): (Vec<_>, Vec<_>) = (0..n.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(LANE_DEPTH);
                let task = tokio::spawn(run_lane(bus.clone(), rx, done.clone(), shutdown.clone()));
                (tx, task)
            })
            .unzip();
        (Self { lanes }, tasks)
    }

    fn lane(&self, patient_id: &str) -> &mpsc::Sender<OutputBatch> {
        &self.lanes[route(patient_id, self.lanes.len())]
    }

    /// Queues a batch from async code (waits while the lane is full).
    pub(crate) async fn send(&self, batch: OutputBatch) -> bool {
        self.lane(&batch.patient_id).send(batch).await.is_ok()
    }

    /// Queues a batch from a worker thread (blocks while the lane is full).
    pub(crate) fn send_blocking(&self, batch: OutputBatch) -> bool {
        self.lane(&batch.patient_id).blocking_send(batch).is_ok()
    }
}

#[cfg(test)]
impl Lanes {
    /// One lane whose batches a test reads instead of publishing them.
    pub(crate) fn captured(depth: usize) -> (Self, mpsc::Receiver<OutputBatch>) {
        let (tx, rx) = mpsc::channel(depth);
        (Self { lanes: vec![tx] }, rx)
    }
}

async fn run_lane(
    bus: Bus,
    mut batches: mpsc::Receiver<OutputBatch>,
    done: Completions,
    shutdown: CancellationToken,
) {
    while let Some(batch) = batches.recv().await {
        for (topic, payload) in &batch.records {
            if !publish_until_delivered(&bus, *topic, &batch.patient_id, payload, &shutdown).await {
                return;
            }
        }
        if let Some(ticket) = batch.ticket {
            done.complete(ticket);
        }
    }
}

/// Publishes one record, retrying with backoff: an output is never dropped for a transient
/// broker failure. Returns false (give up, ticket not done) when the stage is stopping and the
/// broker still refuses. A record the bus can never take (over its size limit) is logged and
/// skipped: retrying cannot help, and holding the lane would stop every patient behind it.
async fn publish_until_delivered(
    bus: &Bus,
    topic: Topic,
    patient_id: &str,
    payload: &[u8],
    shutdown: &CancellationToken,
) -> bool {
    let name = bus.topic(topic);
    let mut backoff = Duration::from_millis(100);
    loop {
        match bus.publish(&name, patient_id.as_bytes(), payload).await {
            Ok(_) => return true,
            Err(err @ (BusError::RecordTooLarge { .. } | BusError::Codec(_))) => {
                tracing::error!(%err, topic = name, patient_id, "output can never be published; skipped");
                return true;
            }
            Err(err) if shutdown.is_cancelled() => {
                tracing::warn!(%err, topic = name, patient_id, "output not published at shutdown; its input will be redelivered");
                return false;
            }
            Err(err) => {
                tracing::warn!(%err, topic = name, patient_id, ?backoff, "publish failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patient_always_routes_to_the_same_lane() {
        for n in 1..8 {
            let lane = route("patient-7", n);
            assert!(lane < n);
            assert_eq!(route("patient-7", n), lane);
        }
        let spread: std::collections::HashSet<usize> =
            (0..64).map(|i| route(&format!("p{i}"), 4)).collect();
        assert_eq!(spread.len(), 4, "patients spread over every lane");
    }
}
