//! Alert semantics of docs/ARCHITECTURE.md "Alert contract", per patient, as a state machine whose every
//! transition is an [`AlertEvent`] (the record on `vigil.alerts`).
//!
//! - **Seizure** (signal time): a run of consecutive points with aggregate p at or above
//!   `on_threshold` lasting `on_duration_s` raises (onset = its first point); a run below
//!   `off_threshold` lasting `off_duration_s` resolves. A NaN point ("not evaluated") neither
//!   raises nor resolves: it restarts both runs, so missing data can never end an alarm or
//!   start one.
//! - **Sustained seizure burden** (signal time): among the evaluated points of the last
//!   `burden_window_s`, the fraction with p >= `on_threshold`; raised at >= `burden_threshold`
//!   once a full window was seen with at least half of it evaluated, resolved below 0.5.
//! - **Signal loss** (wall clock, [`PatientAlerts::on_tick`]): no samples for more than
//!   `signal_loss_s`; resolved by the next samples.
//! - **Acknowledgement and escalation**: every raised alert needs a clinician's
//!   acknowledgement; unacknowledged after `escalate_after_s` it is escalated (once). An alert
//!   is forgotten only when it is both resolved and acknowledged.
//! - **Restart**: [`PatientAlerts::apply`] folds the events read back from `vigil.alerts`, so
//!   an open alert is neither raised again nor lost, and its escalation timer keeps running
//!   from the original raise time.
//!
//! - **Brady- and tachycardia** (device time, [`PatientAlerts::on_heart_rate`]): every valid
//!   rate of a run below `brady_below_bpm` (above `tachy_above_bpm`) spanning
//!   `hr_band_duration_s` raises; a run inside the band as long resolves. Artefacts (see
//!   [`crate::heart_rate`]) neither raise nor resolve; a gap of more than 5 s between valid
//!   rates restarts the runs.
//! - **Ictal tachycardia** is evidence, not an alert: a seizure alert raised (or resolved)
//!   while a heart-rate rise was seen since `ictal_baseline_s` before its onset carries the
//!   rise (`baseline_bpm`, `hr_rise_bpm`, `bpm`) and the RMSSD in its evidence.

use std::collections::VecDeque;

use uuid::Uuid;
use vigil_core::record::{
    AlertEvent, AlertEvidence, AlertKind, AlertTransition, HrPoint, SeizureProbability,
};

use crate::heart_rate::HeartRateTracker;

/// Longest gap between valid heart rates that still continues a band run, in ns.
const HR_RUN_GAP_NS: i64 = 5_000_000_000;

pub use vigil_core::config::AlertPolicy;

pub use vigil_core::open_alerts::{OpenAlert, OpenAlerts};

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// No open alert with that id for this patient.
    #[error("no open alert {0} for this patient")]
    Unknown(Uuid),
    /// Acknowledged before.
    #[error("alert {0} is already acknowledged")]
    AlreadyAcknowledged(Uuid),
}

/// A run of qualifying points: start time of its first point.
#[derive(Debug, Default, Clone, Copy)]
struct Run(Option<i64>);

impl Run {
    /// Extends or restarts the run; returns its duration including this point.
    fn extend(&mut self, t_ns: i64, step_ns: i64, qualifies: bool) -> Option<(i64, f64)> {
        if !qualifies {
            self.0 = None;
            return None;
        }
        let start = *self.0.get_or_insert(t_ns);
        Some((start, (t_ns + step_ns - start) as f64 / 1e9))
    }
}

/// A run of valid heart rates on one side of a band edge: (first, last) observation times.
#[derive(Debug, Default, Clone, Copy)]
struct HrRun(Option<(i64, i64)>);

impl HrRun {
    /// Extends or restarts the run; returns its span in seconds when the point qualifies.
    fn extend(&mut self, t_ns: i64, qualifies: bool) -> Option<(i64, f64)> {
        if !qualifies {
            self.0 = None;
            return None;
        }
        let (first, _) = match self.0 {
            Some((first, last)) if t_ns - last <= HR_RUN_GAP_NS => (first, last),
            _ => (t_ns, t_ns),
        };
        self.0 = Some((first, t_ns));
        Some((first, (t_ns - first) as f64 / 1e9))
    }
}

/// Raise/resolve runs of one heart-rate band edge.
#[derive(Debug, Default, Clone, Copy)]
struct BandRuns {
    outside: HrRun,
    inside: HrRun,
}

/// One patient's alert state.
#[derive(Debug)]
pub struct PatientAlerts {
    patient_id: String,
    policy: AlertPolicy,
    open: OpenAlerts,
    seizure_on: Run,
    seizure_off: Run,
    /// Points of the burden window: (t_ns, evaluated, seizure).
    burden: VecDeque<(i64, bool, bool)>,
    first_point_ns: Option<i64>,
    last_samples_ns: Option<i64>,
    heart: HeartRateTracker,
    tachy: BandRuns,
    brady: BandRuns,
    /// A seizure alert raised early on provisional values whose run the final values have not
    /// reached yet: it cannot resolve before they do.
    early: Option<Uuid>,
    /// The latest onset of a seizure alert raised for this patient, by this instance or (read
    /// back from `vigil.alerts`) by the one before it. A run starting at or before it is that
    /// seizure, already alerted: an instance that took the patient over re-evaluates the
    /// records its predecessor did not commit, and must not raise it a second time.
    alerted_onset_ns: Option<i64>,
}

impl PatientAlerts {
    /// No alerts yet.
    pub fn new(patient_id: &str, policy: AlertPolicy) -> Self {
        Self {
            patient_id: patient_id.to_owned(),
            policy,
            open: OpenAlerts::default(),
            seizure_on: Run::default(),
            seizure_off: Run::default(),
            burden: VecDeque::new(),
            first_point_ns: None,
            last_samples_ns: None,
            heart: HeartRateTracker::new(policy),
            tachy: BandRuns::default(),
            brady: BandRuns::default(),
            early: None,
            alerted_onset_ns: None,
        }
    }

    /// Whether this instance has received samples for the patient (it owns the patient's
    /// partition): only then does it run the patient's wall-clock checks.
    pub fn is_fed(&self) -> bool {
        self.last_samples_ns.is_some()
    }

    /// This instance no longer holds the patient's partition: its wall-clock checks stop and
    /// the folds over its points (seizure runs, burden, heart-rate bands) are forgotten, as
    /// the new owner continues them. Open alerts stay: every instance follows them on the
    /// alerts topic.
    pub fn release(&mut self) {
        let open = std::mem::take(&mut self.open);
        *self = Self::new(&self.patient_id, self.policy);
        self.open = open;
    }

    /// Alerts not yet both resolved and acknowledged.
    pub fn open(&self) -> impl Iterator<Item = &OpenAlert> {
        self.open.iter()
    }

    /// A point counts as seizure: evaluated and at or above the on-threshold.
    fn is_seizure(&self, p: f32) -> bool {
        !p.is_nan() && p >= self.policy.on_threshold
    }

    fn active(&self, kind: AlertKind) -> Option<Uuid> {
        self.open
            .iter()
            .find(|a| a.kind == kind && !a.is_resolved())
            .map(|a| a.alert_id)
    }

    fn event(
        &self,
        alert: &OpenAlert,
        transition: AlertTransition,
        at_ns: i64,
        evidence: AlertEvidence,
    ) -> AlertEvent {
        AlertEvent {
            alert_id: alert.alert_id,
            patient_id: self.patient_id.clone(),
            kind: alert.kind,
            transition,
            onset_ns: alert.onset_ns,
            at_ns,
            by: None,
            evidence,
        }
    }

    fn raise(
        &mut self,
        kind: AlertKind,
        onset_ns: i64,
        now_ns: i64,
        evidence: AlertEvidence,
    ) -> AlertEvent {
        let event = AlertEvent {
            alert_id: Uuid::new_v4(),
            patient_id: self.patient_id.clone(),
            kind,
            transition: AlertTransition::Raised,
            onset_ns,
            at_ns: now_ns,
            by: None,
            evidence,
        };
        self.note(&event);
        event
    }

    /// Folds an event into the open alerts and the seizure onsets already alerted.
    fn note(&mut self, event: &AlertEvent) {
        if event.kind == AlertKind::Seizure && event.transition == AlertTransition::Raised {
            self.alerted_onset_ns = self.alerted_onset_ns.max(Some(event.onset_ns));
        }
        self.open.apply(event);
    }

    /// Whether a seizure run starting at `onset_ns` was alerted already (see
    /// `alerted_onset_ns`).
    fn alerted_before(&self, onset_ns: i64) -> bool {
        self.alerted_onset_ns.is_some_and(|t| onset_ns <= t)
    }

    fn resolve(&mut self, id: Uuid, now_ns: i64, evidence: AlertEvidence) -> Option<AlertEvent> {
        let alert = self.open.get(&id)?;
        let event = self.event(alert, AlertTransition::Resolved, now_ns, evidence);
        self.open.apply(&event);
        Some(event)
    }

    /// Feeds finalized probabilities (signal time); returns the transitions they cause.
    /// `now_ns` is the wall time used for the events' `at_ns`.
    pub fn on_probability(&mut self, record: &SeizureProbability, now_ns: i64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let step = record.step_ns;
        let window_ns = (self.policy.burden_window_s * 1e9) as i64;
        for (i, &p) in record.aggregate_p.iter().enumerate() {
            let t = record.start_ns + i as i64 * step;
            let first = *self.first_point_ns.get_or_insert(t);
            let evidence = AlertEvidence {
                p: (!p.is_nan()).then_some(p),
                ..Default::default()
            };

            // Seizure hysteresis. An early-raised alert is not active for the final fold
            // until the final values reach its run: then it is confirmed, not raised again.
            let early = self.early;
            match self
                .active(AlertKind::Seizure)
                .filter(|id| Some(*id) != early)
            {
                None => {
                    self.seizure_off = Run::default();
                    let run = self.seizure_on.extend(t, step, self.is_seizure(p));
                    if let Some((onset, secs)) = run {
                        // A run that is a seizure alerted already goes on unbroken, so its
                        // rest cannot start a run of its own that raises it again.
                        let alerted = self.early.is_none() && self.alerted_before(onset);
                        if secs >= self.policy.on_duration_s && !alerted {
                            match self.early.take() {
                                Some(id) => events.extend(self.confirm_early(id, onset, now_ns)),
                                None => {
                                    let evidence = self.with_heart_evidence(evidence, onset);
                                    events.push(self.raise(
                                        AlertKind::Seizure,
                                        onset,
                                        now_ns,
                                        evidence,
                                    ));
                                }
                            }
                            self.seizure_on = Run::default();
                        }
                    }
                }
                // Points before the alert's onset say nothing about its end: an instance that
                // took the patient over after an early raise finalizes them first.
                Some(id) if self.open.get(&id).is_some_and(|a| t < a.onset_ns) => {
                    self.seizure_on = Run::default();
                }
                Some(id) => {
                    self.seizure_on = Run::default();
                    let run = self.seizure_off.extend(
                        t,
                        step,
                        !p.is_nan() && p < self.policy.off_threshold,
                    );
                    if matches!(run, Some((_, secs)) if secs >= self.policy.off_duration_s) {
                        let onset = self.open.get(&id).map_or(t, |a| a.onset_ns);
                        let evidence = self.with_heart_evidence(evidence, onset);
                        events.extend(self.resolve(id, now_ns, evidence));
                        self.seizure_off = Run::default();
                    }
                }
            }

            // Sustained burden over the last window of points.
            self.burden.push_back((t, !p.is_nan(), self.is_seizure(p)));
            while self
                .burden
                .front()
                .is_some_and(|(t0, _, _)| *t0 <= t - window_ns)
            {
                self.burden.pop_front();
            }
            let window_points = (window_ns / step).max(1) as usize;
            let evaluated = self.burden.iter().filter(|b| b.1).count();
            let full = t + step - first >= window_ns && evaluated * 2 >= window_points;
            if full {
                let burden = self.burden.iter().filter(|b| b.2).count() as f32 / evaluated as f32;
                let evidence = AlertEvidence {
                    burden: Some(burden),
                    p: evidence.p,
                    ..Default::default()
                };
                match self.active(AlertKind::SustainedSeizureBurden) {
                    None if burden >= self.policy.burden_threshold => {
                        let onset = self.burden.front().map_or(t, |b| b.0);
                        events.push(self.raise(
                            AlertKind::SustainedSeizureBurden,
                            onset,
                            now_ns,
                            evidence,
                        ));
                    }
                    Some(id) if burden < 0.5 => events.extend(self.resolve(id, now_ns, evidence)),
                    _ => {}
                }
            }
        }
        events
    }

    /// Early seizure alerting on provisional values: `values` (from `start_ns`, every
    /// `step_ns`) are the current NaN-aware maxima of the points after the last final one fed
    /// to [`PatientAlerts::on_probability`]. Each can only grow until final, so a run that meets
    /// the on-rule here is certain to meet it on the final values: the alert is raised now,
    /// minutes before the points are final. Resolution waits for final values (docs/ALERTS.md).
    pub fn on_provisional(
        &mut self,
        start_ns: i64,
        step_ns: i64,
        values: &[f32],
        now_ns: i64,
    ) -> Vec<AlertEvent> {
        if self.active(AlertKind::Seizure).is_some() {
            return Vec::new();
        }
        let mut run = self.seizure_on;
        for (i, &p) in values.iter().enumerate() {
            let t = start_ns + i as i64 * step_ns;
            if let Some((onset, secs)) = run.extend(t, step_ns, self.is_seizure(p)) {
                if secs >= self.policy.on_duration_s {
                    // The rest of a seizure alerted already; a later run may still be new.
                    if self.alerted_before(onset) {
                        continue;
                    }
                    let evidence = AlertEvidence {
                        p: Some(p),
                        ..Default::default()
                    };
                    let evidence = self.with_heart_evidence(evidence, onset);
                    let event = self.raise(AlertKind::Seizure, onset, now_ns, evidence);
                    self.early = Some(event.alert_id);
                    return vec![event];
                }
            }
        }
        Vec::new()
    }

    /// The final values reached an early alert's run: from now on it resolves on final values.
    /// The final onset can only be at or before the provisional one; when it is earlier, an
    /// `onset_refined` event says so (the alert's later events carry it too).
    fn confirm_early(&mut self, id: Uuid, final_onset_ns: i64, now_ns: i64) -> Option<AlertEvent> {
        let alert = self.open.get(&id)?;
        if final_onset_ns >= alert.onset_ns {
            return None;
        }
        tracing::info!(
            patient_id = self.patient_id,
            alert_id = %id,
            shift_s = (alert.onset_ns - final_onset_ns) as f64 / 1e9,
            "early seizure alert confirmed by final values; onset refined"
        );
        let mut event = self.event(
            alert,
            AlertTransition::OnsetRefined,
            now_ns,
            AlertEvidence::default(),
        );
        event.onset_ns = final_onset_ns;
        self.open.apply(&event);
        Some(event)
    }

    /// Ictal-tachycardia evidence: the largest heart-rate rise since `ictal_baseline_s`
    /// before `onset_ns`, and the current RMSSD.
    fn with_heart_evidence(&self, mut evidence: AlertEvidence, onset_ns: i64) -> AlertEvidence {
        let from = onset_ns - (self.policy.ictal_baseline_s * 1e9) as i64;
        if let Some(rise) = self.heart.largest_rise_since(from) {
            evidence.bpm = Some(rise.bpm);
            evidence.baseline_bpm = Some(rise.baseline_bpm);
            evidence.hr_rise_bpm = Some(rise.rise_bpm());
        }
        evidence.rmssd_ms = self.heart.rmssd_ms();
        evidence
    }

    /// Feeds heart-rate observations (device time, in order); returns the brady- and
    /// tachycardia transitions they cause. `now_ns` is the wall time for `at_ns`.
    pub fn on_heart_rate(&mut self, points: &[HrPoint], now_ns: i64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        for point in points {
            let assessment = self.heart.push(point);
            let Some(bpm) = assessment.bpm else {
                continue;
            };
            let t = assessment.t_ns;
            let evidence = AlertEvidence {
                bpm: Some(bpm),
                rmssd_ms: self.heart.rmssd_ms(),
                ..Default::default()
            };
            let (high, low) = (self.policy.tachy_above_bpm, self.policy.brady_below_bpm);
            for (kind, outside) in [
                (AlertKind::Tachycardia, bpm > high),
                (AlertKind::Bradycardia, bpm < low),
            ] {
                let mut runs = match kind {
                    AlertKind::Tachycardia => self.tachy,
                    _ => self.brady,
                };
                match self.active(kind) {
                    None => {
                        runs.inside = HrRun::default();
                        if let Some((onset, secs)) = runs.outside.extend(t, outside) {
                            if secs >= self.policy.hr_band_duration_s {
                                events.push(self.raise(kind, onset, now_ns, evidence));
                                runs.outside = HrRun::default();
                            }
                        }
                    }
                    Some(id) => {
                        runs.outside = HrRun::default();
                        let run = runs.inside.extend(t, !outside);
                        if matches!(run, Some((_, secs)) if secs >= self.policy.hr_band_duration_s)
                        {
                            events.extend(self.resolve(id, now_ns, evidence));
                            runs.inside = HrRun::default();
                        }
                    }
                }
                match kind {
                    AlertKind::Tachycardia => self.tachy = runs,
                    _ => self.brady = runs,
                }
            }
        }
        events
    }

    /// Samples arrived at wall time `now_ns`: resolves an open signal-loss alert.
    pub fn on_samples(&mut self, now_ns: i64) -> Vec<AlertEvent> {
        self.last_samples_ns = Some(now_ns);
        self.active(AlertKind::SignalLoss)
            .and_then(|id| self.resolve(id, now_ns, AlertEvidence::default()))
            .into_iter()
            .collect()
    }

    /// Wall-clock checks: signal loss and escalation of unacknowledged alerts.
    pub fn on_tick(&mut self, now_ns: i64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        if let Some(last) = self.last_samples_ns {
            let silent_s = (now_ns - last) as f64 / 1e9;
            if silent_s > self.policy.signal_loss_s && self.active(AlertKind::SignalLoss).is_none()
            {
                events.push(self.raise(
                    AlertKind::SignalLoss,
                    last,
                    now_ns,
                    AlertEvidence::default(),
                ));
            }
        }
        let due = (self.policy.escalate_after_s * 1e9) as i64;
        let overdue: Vec<Uuid> = self
            .open
            .iter()
            .filter(|a| !a.is_acknowledged() && !a.escalated && now_ns - a.raised_at_ns >= due)
            .map(|a| a.alert_id)
            .collect();
        for id in overdue {
            if let Some(alert) = self.open.get(&id) {
                let event = self.event(
                    alert,
                    AlertTransition::Escalated,
                    now_ns,
                    AlertEvidence::default(),
                );
                self.open.apply(&event);
                events.push(event);
            }
        }
        events
    }

    /// A clinician acknowledges an alert.
    pub fn acknowledge(
        &mut self,
        alert_id: Uuid,
        by: &str,
        now_ns: i64,
    ) -> Result<AlertEvent, AckError> {
        let alert = self
            .open
            .get(&alert_id)
            .ok_or(AckError::Unknown(alert_id))?;
        if alert.is_acknowledged() {
            return Err(AckError::AlreadyAcknowledged(alert_id));
        }
        let mut event = self.event(
            alert,
            AlertTransition::Acknowledged,
            now_ns,
            AlertEvidence::default(),
        );
        event.by = Some(by.to_owned());
        self.open.apply(&event);
        Ok(event)
    }

    /// Folds an event read back from `vigil.alerts` (restart recovery, or an acknowledgement
    /// produced by the dashboard).
    pub fn apply(&mut self, event: &AlertEvent) {
        self.note(event);
    }
}

/// Wall clock derived from tokio's clock, so timers can be tested with paused time.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin_ns: i64,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// Starts at the system time now.
    pub fn system() -> Self {
        Self::starting_at(vigil_core::time::now_ns())
    }

    /// Starts at `origin_ns` (tests).
    pub fn starting_at(origin_ns: i64) -> Self {
        Self {
            origin_ns,
            origin: tokio::time::Instant::now(),
        }
    }

    /// Now, in ns since the Unix epoch.
    pub fn now_ns(&self) -> i64 {
        self.origin_ns + self.origin.elapsed().as_nanos() as i64
    }
}

/// Calls [`PatientAlerts::on_tick`] for every patient each `period` and sends the events,
/// until `shutdown`.
pub async fn run_ticks(
    patients: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, PatientAlerts>>>,
    clock: TokioClock,
    period: std::time::Duration,
    events: tokio::sync::mpsc::Sender<AlertEvent>,
    shutdown: vigil_core::CancellationToken,
) {
    let mut ticker = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = clock.now_ns();
        let due: Vec<AlertEvent> = {
            let mut patients = patients.lock().unwrap_or_else(|p| p.into_inner());
            patients
                .values_mut()
                .filter(|p| p.is_fed())
                .flat_map(|p| p.on_tick(now))
                .collect()
        };
        for event in due {
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}
