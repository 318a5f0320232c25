//! The live hub: per patient, the recent updates and the browsers watching them.
//!
//! Every update read from the bus gets the patient's next sequence number and goes, under the
//! patient's lock, into a recent ring and to each subscribed browser's bounded queue. A
//! browser subscribing takes, under the same lock, a snapshot of the ring and its place among
//! the subscribers, so it receives every update exactly once: the snapshot ends at sequence
//! `S` and its queue starts at `S + 1`. Reconnecting browsers pass the last sequence they saw
//! (with the hub's `epoch`) and get only what they missed, or a full snapshot flagged
//! `resumed: false` when the ring no longer holds it.
//!
//! A browser whose queue is full is never waited for: it is removed and told to go (its
//! overflow token fires), so one slow screen cannot delay the others.
//!
//! Alert events are also folded into each patient's open alerts (raised and not yet both
//! resolved and acknowledged), which every snapshot carries whatever their age.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vigil_core::open_alerts::{OpenAlert, OpenAlerts};
use vigil_core::record::{
    AlertEvent, AlertEvidence, AlertKind, AlertTransition, EegTrace, EegTrends, HrBatch, ModelRef,
    ProvisionalProbability, SeizureProbability,
};
use vigil_core::telemetry::events::Emit;

use crate::events::ClientDropped;

/// What an update carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemKind {
    /// Seizure probabilities (`vigil.eeg.prob`).
    Probability,
    /// The lower bound of probabilities not final yet (`vigil.eeg.prob`, provisional kind).
    Provisional,
    /// Heart-rate points (`vigil.hr.raw`).
    HeartRate,
    /// Display-filtered EEG (`vigil.eeg.trace`).
    Trace,
    /// qEEG trend intervals (`vigil.eeg.trends`).
    Trends,
    /// An alert transition (`vigil.alerts`).
    Alert,
}

impl ItemKind {
    /// The `type` of the update on the WebSocket and the metrics label.
    pub fn label(self) -> &'static str {
        match self {
            ItemKind::Probability => "prob",
            ItemKind::Provisional => "prob_provisional",
            ItemKind::HeartRate => "hr",
            ItemKind::Trace => "trace",
            ItemKind::Trends => "trends",
            ItemKind::Alert => "alert",
        }
    }
}

/// One update, serialized once for every browser.
#[derive(Debug)]
pub struct LiveItem {
    /// Per-patient sequence number, from 1, gapless within an epoch.
    pub seq: u64,
    /// Kind.
    pub kind: ItemKind,
    /// When the dashboard read it from the bus, UTC ns (ring eviction).
    pub arrived_ns: i64,
    /// Reference time for the push latency metric, UTC ns (see docs/DASHBOARD.md).
    pub origin_ns: Option<i64>,
    /// The WebSocket text frame.
    pub json: Utf8Bytes,
}

/// An alert as the screens show it: [`OpenAlert`] (the one fold of its events) in the
/// browser's units.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertView {
    /// Alert id (acknowledge with it).
    pub alert_id: Uuid,
    /// Condition.
    pub kind: AlertKind,
    /// Signal time the condition began, ms since the epoch.
    pub onset_ms: f64,
    /// When it was raised, ms since the epoch.
    pub raised_ms: f64,
    /// Escalated (unacknowledged too long).
    pub escalated: bool,
    /// Who acknowledged it, once acknowledged.
    pub acknowledged_by: Option<String>,
    /// When it was acknowledged.
    pub acknowledged_ms: Option<f64>,
    /// When the condition ended, once it did.
    pub resolved_ms: Option<f64>,
    /// Measurements behind the latest transition that carried any.
    pub evidence: AlertEvidence,
    /// The raw onset, ns (for the acknowledgement record).
    #[serde(skip)]
    pub onset_ns: i64,
}

impl From<&OpenAlert> for AlertView {
    fn from(a: &OpenAlert) -> Self {
        AlertView {
            alert_id: a.alert_id,
            kind: a.kind,
            onset_ms: ns_to_ms(a.onset_ns),
            raised_ms: ns_to_ms(a.raised_at_ns),
            escalated: a.escalated,
            acknowledged_by: a.acknowledged.as_ref().and_then(|(by, _)| by.clone()),
            acknowledged_ms: a.acknowledged.as_ref().map(|(_, at)| ns_to_ms(*at)),
            resolved_ms: a.resolved_at_ns.map(ns_to_ms),
            evidence: a.evidence,
            onset_ns: a.onset_ns,
        }
    }
}

/// A browser's queue and its overflow signal.
#[derive(Debug, Clone)]
pub struct ClientSink {
    id: u64,
    traces: bool,
    tx: mpsc::Sender<Arc<LiveItem>>,
    overflow: CancellationToken,
}

impl ClientSink {
    /// A sink for one browser connection; `traces` = whether it wants EEG traces (the ward
    /// overview does not). Returns the receiving end too.
    pub fn new(
        capacity: usize,
        traces: bool,
    ) -> (Self, mpsc::Receiver<Arc<LiveItem>>, CancellationToken) {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let overflow = CancellationToken::new();
        (
            Self {
                id: NEXT.fetch_add(1, Ordering::Relaxed),
                traces,
                tx,
                overflow: overflow.clone(),
            },
            rx,
            overflow,
        )
    }

    /// Traces and trends go only to the patient view (the ward's tiles show neither).
    fn wants(&self, kind: ItemKind) -> bool {
        self.traces || !matches!(kind, ItemKind::Trace | ItemKind::Trends)
    }
}

/// What a subscribing browser gets first.
#[derive(Debug)]
pub struct Snapshot {
    /// Whether it continues from the sequence the browser passed (otherwise it replaces
    /// what the browser had).
    pub resumed: bool,
    /// Last sequence assigned so far; live updates start after it.
    pub last_seq: u64,
    /// Open alerts.
    pub open_alerts: Vec<AlertView>,
    /// Recent updates, ascending sequence.
    pub items: Vec<Arc<LiveItem>>,
}

/// Why an acknowledgement cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckRefusal {
    /// No open alert with that id.
    #[error("no open alert {0} for this patient")]
    Unknown(Uuid),
    /// Acknowledged before.
    #[error("alert {alert_id} was already acknowledged by {by}")]
    AlreadyAcknowledged {
        /// Alert.
        alert_id: Uuid,
        /// By whom.
        by: String,
    },
    /// Another acknowledgement is being published.
    #[error("alert {0} is being acknowledged")]
    InProgress(Uuid),
}

#[derive(Debug, Default)]
struct PatientLive {
    next_seq: u64,
    evicted_through: u64,
    ring: VecDeque<Arc<LiveItem>>,
    /// Latest probability and heart-rate update, kept past the window so a tile shows the
    /// last measured value (with its time) rather than nothing.
    latest: HashMap<ItemKind, Arc<LiveItem>>,
    alerts: OpenAlerts,
    acks_in_flight: HashSet<Uuid>,
    subscribers: Vec<ClientSink>,
}

impl PatientLive {
    fn evict(&mut self, now_ns: i64, window_ns: i64, max_items: usize) {
        while let Some(front) = self.ring.front() {
            if self.ring.len() > max_items || front.arrived_ns < now_ns - window_ns {
                self.evicted_through = front.seq;
                self.ring.pop_front();
            } else {
                break;
            }
        }
    }

    fn fold_alert(&mut self, event: &AlertEvent) {
        if event.transition == AlertTransition::Acknowledged {
            self.acks_in_flight.remove(&event.alert_id);
        }
        self.alerts.apply(event);
    }
}

/// The hub shared by the bus feed, the WebSocket sessions and the acknowledgement handler.
#[derive(Debug, Clone)]
pub struct LiveHub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    epoch: Uuid,
    window_ns: i64,
    max_items: usize,
    patients: RwLock<HashMap<String, Arc<Mutex<PatientLive>>>>,
}

fn lock(patient: &Mutex<PatientLive>) -> std::sync::MutexGuard<'_, PatientLive> {
    patient.lock().unwrap_or_else(|p| p.into_inner())
}

impl LiveHub {
    /// A hub keeping `window_s` seconds (at most `max_items` updates) per patient.
    pub fn new(window_s: f64, max_items: usize) -> Self {
        Self {
            inner: Arc::new(HubInner {
                epoch: Uuid::new_v4(),
                window_ns: (window_s * 1e9) as i64,
                max_items: max_items.max(1),
                patients: RwLock::default(),
            }),
        }
    }

    /// Identifies this hub's sequence numbers: they restart with the process.
    pub fn epoch(&self) -> Uuid {
        self.inner.epoch
    }

    fn patient(&self, patient_id: &str) -> Arc<Mutex<PatientLive>> {
        if let Some(p) = self
            .inner
            .patients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(patient_id)
        {
            return p.clone();
        }
        self.inner
            .patients
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(patient_id.to_owned())
            .or_default()
            .clone()
    }

    /// Publishes an update to the patient's ring and subscribers. `data` is the JSON of the
    /// update's `data` field. Returns the sequence number assigned. Alerts go through
    /// [`LiveHub::push_alert`], which also folds them.
    pub fn push(
        &self,
        patient_id: &str,
        kind: ItemKind,
        origin_ns: Option<i64>,
        data: &str,
        now_ns: i64,
    ) -> u64 {
        self.push_inner(patient_id, kind, origin_ns, data, now_ns, None)
    }

    fn push_inner(
        &self,
        patient_id: &str,
        kind: ItemKind,
        origin_ns: Option<i64>,
        data: &str,
        now_ns: i64,
        alert: Option<&AlertEvent>,
    ) -> u64 {
        let patient = self.patient(patient_id);
        let mut live = lock(&patient);
        live.next_seq += 1;
        let seq = live.next_seq;
        let patient_json = serde_json::to_string(patient_id).unwrap_or_default();
        let mut json = String::with_capacity(data.len() + 80);
        let _ = write!(
            json,
            r#"{{"type":"{}","patient_id":{patient_json},"seq":{seq},"data":{data}}}"#,
            kind.label()
        );
        let item = Arc::new(LiveItem {
            seq,
            kind,
            arrived_ns: now_ns,
            origin_ns,
            json: Utf8Bytes::from(json),
        });
        if let Some(event) = alert {
            live.fold_alert(event);
        }
        if matches!(kind, ItemKind::Probability | ItemKind::HeartRate) {
            live.latest.insert(kind, item.clone());
        }
        live.ring.push_back(item.clone());
        live.evict(now_ns, self.inner.window_ns, self.inner.max_items);
        live.subscribers.retain(|sink| {
            if !sink.wants(kind) {
                return true;
            }
            match sink.tx.try_send(item.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    ClientDropped { reason: "slow" }.emit();
                    sink.overflow.cancel();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        seq
    }

    /// Publishes a probability record.
    pub fn push_probability(&self, record: &SeizureProbability, now_ns: i64) -> u64 {
        self.push_inner(
            &record.patient_id,
            ItemKind::Probability,
            Some(record.emitted_ns),
            &probability_json(record),
            now_ns,
            None,
        )
    }

    /// Publishes the lower bound of points not final yet; a screen shows it, marked as such,
    /// after the last final point until the final values arrive.
    pub fn push_provisional(&self, record: &ProvisionalProbability, now_ns: i64) -> u64 {
        self.push_inner(
            &record.patient_id,
            ItemKind::Provisional,
            Some(record.emitted_ns),
            &grid_json(
                record.start_ns,
                record.step_ns,
                &record.model,
                &record.aggregate_p,
            ),
            now_ns,
            None,
        )
    }

    /// Publishes a heart-rate batch; `published_ns` is the bus timestamp (ingest's produce
    /// time), the batch itself carries no receipt time.
    pub fn push_heart_rate(&self, batch: &HrBatch, published_ns: Option<i64>, now_ns: i64) -> u64 {
        self.push_inner(
            &batch.patient_id,
            ItemKind::HeartRate,
            published_ns,
            &heart_rate_json(batch),
            now_ns,
            None,
        )
    }

    /// Publishes a display trace.
    pub fn push_trace(&self, trace: &EegTrace, now_ns: i64) -> u64 {
        self.push_inner(
            &trace.patient_id,
            ItemKind::Trace,
            Some(trace.received_ns),
            &trace_json(trace),
            now_ns,
            None,
        )
    }

    /// Publishes a qEEG trend interval.
    pub fn push_trends(&self, trends: &EegTrends, now_ns: i64) -> u64 {
        self.push_inner(
            &trends.patient_id,
            ItemKind::Trends,
            Some(trends.emitted_ns),
            &crate::trends::trends_json(trends),
            now_ns,
            None,
        )
    }

    /// Publishes an alert transition and folds it into the patient's open alerts.
    pub fn push_alert(&self, event: &AlertEvent, now_ns: i64) -> u64 {
        let data = serde_json::to_string(&AlertEventJson::from(event)).unwrap_or_default();
        self.push_inner(
            &event.patient_id,
            ItemKind::Alert,
            Some(event.at_ns),
            &data,
            now_ns,
            Some(event),
        )
    }

    /// Folds an alert event without publishing it (events older than the window, read at
    /// start-up: they matter for open alerts, not as live updates).
    pub fn fold_alert(&self, event: &AlertEvent) {
        lock(&self.patient(&event.patient_id)).fold_alert(event);
    }

    /// Subscribes `sink` to a patient and returns what it must be sent first. `after` = the
    /// last sequence the browser holds from this epoch.
    pub fn subscribe(
        &self,
        patient_id: &str,
        after: Option<u64>,
        sink: &ClientSink,
        now_ns: i64,
    ) -> Snapshot {
        let patient = self.patient(patient_id);
        let mut live = lock(&patient);
        live.evict(now_ns, self.inner.window_ns, self.inner.max_items);
        let resumed = after.is_some_and(|a| a >= live.evicted_through && a <= live.next_seq);
        let from = if resumed { after.unwrap_or(0) } else { 0 };
        let first_in_ring = live.ring.front().map_or(u64::MAX, |i| i.seq);
        let mut items: Vec<Arc<LiveItem>> = live
            .latest
            .values()
            .filter(|i| i.seq < first_in_ring && i.seq > from)
            .cloned()
            .collect();
        items.sort_by_key(|i| i.seq);
        items.extend(
            live.ring
                .iter()
                .filter(|i| i.seq > from && sink.wants(i.kind))
                .cloned(),
        );
        live.subscribers.retain(|s| s.id != sink.id);
        live.subscribers.push(sink.clone());
        Snapshot {
            resumed,
            last_seq: live.next_seq,
            open_alerts: live.alerts.iter().map(AlertView::from).collect(),
            items,
        }
    }

    /// Removes a browser from a patient's subscribers.
    pub fn unsubscribe(&self, patient_id: &str, sink: &ClientSink) {
        lock(&self.patient(patient_id))
            .subscribers
            .retain(|s| s.id != sink.id);
    }

    /// Browsers subscribed to a patient.
    pub fn subscriber_count(&self, patient_id: &str) -> usize {
        lock(&self.patient(patient_id)).subscribers.len()
    }

    /// An open alert, if there is one with this id.
    pub fn open_alert(&self, patient_id: &str, alert_id: Uuid) -> Option<AlertView> {
        lock(&self.patient(patient_id))
            .alerts
            .get(&alert_id)
            .map(AlertView::from)
    }

    /// Reserves the acknowledgement of an open, unacknowledged alert; release it with
    /// [`LiveHub::end_ack`] if publishing fails. Two clinicians pressing at once get one
    /// acknowledgement and one 409.
    pub fn begin_ack(&self, patient_id: &str, alert_id: Uuid) -> Result<AlertView, AckRefusal> {
        let patient = self.patient(patient_id);
        let mut live = lock(&patient);
        let alert = live
            .alerts
            .get(&alert_id)
            .map(AlertView::from)
            .ok_or(AckRefusal::Unknown(alert_id))?;
        if let Some(by) = &alert.acknowledged_by {
            return Err(AckRefusal::AlreadyAcknowledged {
                alert_id,
                by: by.clone(),
            });
        }
        if !live.acks_in_flight.insert(alert_id) {
            return Err(AckRefusal::InProgress(alert_id));
        }
        Ok(alert)
    }

    /// Releases a reservation after a failed publish.
    pub fn end_ack(&self, patient_id: &str, alert_id: Uuid) {
        lock(&self.patient(patient_id))
            .acks_in_flight
            .remove(&alert_id);
    }
}

/// UTC ns to ms since the epoch, as JavaScript's `Date` wants it.
pub fn ns_to_ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// Appends `[v, v, null, ...]` with `decimals` digits; NaN becomes `null` ("not
/// evaluated"/gap).
pub(crate) fn write_floats(out: &mut String, values: &[f32], decimals: Option<usize>) {
    out.push('[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if !v.is_finite() {
            out.push_str("null");
        } else if let Some(d) = decimals {
            write_fixed(out, *v, d);
        } else {
            let _ = write!(out, "{v}");
        }
    }
    out.push(']');
}

/// Appends the decimal digits of `n`, at least `width` of them (zero-padded).
fn push_digits(out: &mut String, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    while n > 0 || buf.len() - i < width.max(1) {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend(buf[i..].iter().map(|&b| char::from(b)));
}

/// `v` with `decimals` (<= 6) digits after the point, by integer arithmetic: `{:.2}`
/// formatting dominated the cost of serializing traces.
fn write_fixed(out: &mut String, v: f32, decimals: usize) {
    let decimals = decimals.min(6);
    let scale = 10u64.pow(decimals as u32);
    let q = (f64::from(v) * scale as f64).round() as i64;
    if q < 0 {
        out.push('-');
    }
    let q = q.unsigned_abs();
    push_digits(out, q / scale, 1);
    if decimals > 0 {
        out.push('.');
        push_digits(out, q % scale, decimals);
    }
}

/// `{"start_ms","step_ms","p":[...],"model"}`: the aggregate probability per grid point,
/// exactly as inference produced it (NaN = `null` = not evaluated).
pub fn probability_json(record: &SeizureProbability) -> String {
    grid_json(
        record.start_ns,
        record.step_ns,
        &record.model,
        &record.aggregate_p,
    )
}

/// `{"start_ms","step_ms","p":[...],"model"}` of values on the output grid.
fn grid_json(start_ns: i64, step_ns: i64, model: &ModelRef, values: &[f32]) -> String {
    let mut out = String::with_capacity(64 + values.len() * 8);
    let _ = write!(
        out,
        r#"{{"start_ms":{},"step_ms":{},"model":{},"p":"#,
        ns_to_ms(start_ns),
        ns_to_ms(step_ns),
        serde_json::to_string(&model.id).unwrap_or_default()
    );
    write_floats(&mut out, values, None);
    out.push('}');
    out
}

/// `{"source","points":[[t_ms,bpm,rr_ms|null],...]}`.
pub fn heart_rate_json(batch: &HrBatch) -> String {
    let mut out = String::with_capacity(32 + batch.points.len() * 40);
    let source = serde_json::to_string(&batch.source).unwrap_or_default();
    let _ = write!(out, r#"{{"source":{source},"points":["#);
    for (i, p) in batch.points.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "[{},{}", ns_to_ms(p.t_ns), p.bpm);
        match p.rr_ms {
            Some(rr) => {
                let _ = write!(out, ",{rr}]");
            }
            None => out.push_str(",null]"),
        }
    }
    out.push_str("]}");
    out
}

/// `{"start_ms","fs","channels":[..],"samples":[[..],..]}` in µV with 0.01 µV resolution
/// (far below what a screen can show); NaN = `null` = gap.
pub fn trace_json(trace: &EegTrace) -> String {
    let n: usize = trace.samples.iter().map(Vec::len).sum();
    let mut out = String::with_capacity(96 + n * 7);
    let _ = write!(
        out,
        r#"{{"start_ms":{},"fs":{},"unit":"uV","channels":{},"samples":["#,
        ns_to_ms(trace.start_ns),
        trace.sample_rate_hz,
        serde_json::to_string(&trace.channels).unwrap_or_default()
    );
    for (i, row) in trace.samples.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_floats(&mut out, row, Some(2));
    }
    out.push_str("]}");
    out
}

/// An alert event as the page reads it (times in ms).
#[derive(Debug, Serialize)]
pub struct AlertEventJson {
    /// Alert id.
    pub alert_id: Uuid,
    /// Condition.
    pub kind: AlertKind,
    /// Transition.
    pub transition: AlertTransition,
    /// Onset, ms.
    pub onset_ms: f64,
    /// Transition time, ms.
    pub at_ms: f64,
    /// Acknowledging user.
    pub by: Option<String>,
    /// Measurements.
    pub evidence: AlertEvidence,
}

impl From<&AlertEvent> for AlertEventJson {
    fn from(e: &AlertEvent) -> Self {
        Self {
            alert_id: e.alert_id,
            kind: e.kind,
            transition: e.transition,
            onset_ms: ns_to_ms(e.onset_ns),
            at_ms: ns_to_ms(e.at_ns),
            by: e.by.clone(),
            evidence: e.evidence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn seqs(items: &[Arc<LiveItem>]) -> Vec<u64> {
        items.iter().map(|i| i.seq).collect()
    }

    #[test]
    fn snapshot_and_queue_meet_without_gap_or_duplicate() {
        let hub = LiveHub::new(60.0, 100);
        for _ in 0..3 {
            hub.push("p1", ItemKind::HeartRate, None, "{}", NOW);
        }
        let (sink, mut rx, _) = ClientSink::new(16, true);
        let snap = hub.subscribe("p1", None, &sink, NOW);
        assert_eq!(seqs(&snap.items), vec![1, 2, 3]);
        assert_eq!(snap.last_seq, 3);
        hub.push("p1", ItemKind::HeartRate, None, "{}", NOW);
        assert_eq!(rx.try_recv().map(|i| i.seq).ok(), Some(4));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn resume_sends_only_what_was_missed_or_everything_when_evicted() {
        let hub = LiveHub::new(60.0, 4);
        for _ in 0..3 {
            hub.push("p1", ItemKind::HeartRate, None, "{}", NOW);
        }
        let (sink, _rx, _) = ClientSink::new(16, true);
        let snap = hub.subscribe("p1", Some(2), &sink, NOW);
        assert!(snap.resumed);
        assert_eq!(seqs(&snap.items), vec![3]);
        for _ in 0..5 {
            hub.push("p1", ItemKind::Trace, None, "{}", NOW);
        }
        // Ring holds 5..=8 now; seq 3 and 4 are gone: a full snapshot replaces.
        let snap = hub.subscribe("p1", Some(2), &sink, NOW);
        assert!(!snap.resumed);
        assert_eq!(
            seqs(&snap.items),
            vec![3, 5, 6, 7, 8],
            "latest HR kept in front"
        );
        // A sequence from the future (another epoch) is not a resume.
        assert!(!hub.subscribe("p1", Some(99), &sink, NOW).resumed);
    }

    #[test]
    fn window_evicts_by_arrival_time() {
        let hub = LiveHub::new(10.0, 100);
        hub.push("p1", ItemKind::Trace, None, "{}", NOW);
        hub.push("p1", ItemKind::Trace, None, "{}", NOW + 11_000_000_000);
        let (sink, _rx, _) = ClientSink::new(16, true);
        let snap = hub.subscribe("p1", None, &sink, NOW + 11_000_000_000);
        assert_eq!(seqs(&snap.items), vec![2]);
    }

    #[test]
    fn a_full_queue_disconnects_only_that_client() {
        let hub = LiveHub::new(60.0, 100);
        let (slow, _slow_rx, slow_overflow) = ClientSink::new(2, true);
        let (fast, mut fast_rx, fast_overflow) = ClientSink::new(100, true);
        hub.subscribe("p1", None, &slow, NOW);
        hub.subscribe("p1", None, &fast, NOW);
        for _ in 0..5 {
            hub.push("p1", ItemKind::Trace, None, "{}", NOW);
        }
        assert!(slow_overflow.is_cancelled());
        assert!(!fast_overflow.is_cancelled());
        assert_eq!(hub.subscriber_count("p1"), 1);
        let got: Vec<u64> = std::iter::from_fn(|| fast_rx.try_recv().ok().map(|i| i.seq)).collect();
        assert_eq!(got, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn ward_clients_get_no_traces() {
        let hub = LiveHub::new(60.0, 100);
        hub.push("p1", ItemKind::Trace, None, "{}", NOW);
        hub.push("p1", ItemKind::Probability, None, "{}", NOW);
        let (sink, mut rx, _) = ClientSink::new(16, false);
        let snap = hub.subscribe("p1", None, &sink, NOW);
        assert_eq!(seqs(&snap.items), vec![2]);
        hub.push("p1", ItemKind::Trace, None, "{}", NOW);
        hub.push("p1", ItemKind::HeartRate, None, "{}", NOW);
        assert_eq!(rx.try_recv().map(|i| i.seq).ok(), Some(4));
    }

    fn event(id: Uuid, transition: AlertTransition, by: Option<&str>) -> AlertEvent {
        AlertEvent {
            alert_id: id,
            patient_id: "p1".into(),
            kind: AlertKind::Seizure,
            transition,
            onset_ns: NOW,
            at_ns: NOW,
            by: by.map(str::to_owned),
            evidence: AlertEvidence::default(),
        }
    }

    #[test]
    fn alerts_fold_and_acknowledgements_are_reserved_once() {
        let hub = LiveHub::new(60.0, 100);
        let id = Uuid::new_v4();
        hub.push_alert(&event(id, AlertTransition::Raised, None), NOW);
        assert!(hub.open_alert("p1", id).is_some());
        assert!(hub.begin_ack("p1", id).is_ok());
        assert_eq!(hub.begin_ack("p1", id), Err(AckRefusal::InProgress(id)));
        hub.push_alert(&event(id, AlertTransition::Acknowledged, Some("dr")), NOW);
        assert!(matches!(
            hub.begin_ack("p1", id),
            Err(AckRefusal::AlreadyAcknowledged { .. })
        ));
        hub.push_alert(&event(id, AlertTransition::Resolved, None), NOW);
        assert_eq!(hub.open_alert("p1", id), None, "resolved + acknowledged");
        assert_eq!(
            hub.begin_ack("p1", Uuid::nil()),
            Err(AckRefusal::Unknown(Uuid::nil()))
        );
    }

    #[test]
    fn fixed_point_formatting_matches_rounding() {
        for (v, want) in [
            (12.345_f32, "12.35"),
            (-1.5, "-1.50"),
            (-0.004, "0.00"),
            (0.0, "0.00"),
            (-0.016, "-0.02"),
            (250_000.0, "250000.00"),
        ] {
            let mut out = String::new();
            write_fixed(&mut out, v, 2);
            assert_eq!(out, want, "{v}");
        }
        let mut out = String::new();
        write_floats(&mut out, &[1.0, f32::NAN, -2.25], Some(2));
        assert_eq!(out, "[1.00,null,-2.25]");
    }

    #[test]
    fn json_marks_nan_as_null() {
        let mut out = String::new();
        write_floats(&mut out, &[0.5, f32::NAN, 1.0], None);
        assert_eq!(out, "[0.5,null,1]");
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert!(v[1].is_null());
    }
}
