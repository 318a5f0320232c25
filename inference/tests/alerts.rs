//! Alert semantics (docs/ALERTS.md): hysteresis, NaN handling, burden, acknowledgement,
//! escalation and signal loss with paused tokio time, and rebuild after a restart; early
//! seizure alerting on provisional values is exact (docs/ALERTS.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;

use vigil_core::record::{AlertEvent, AlertKind, AlertTransition, ModelRef, SeizureProbability};
use vigil_core::CancellationToken;
use vigil_inference::alerts::{run_ticks, AckError, AlertPolicy, PatientAlerts, TokioClock};

const T0: i64 = 1_700_000_000_000_000_000;
const STEP: i64 = 500_000_000;

/// Probabilities on the 0.5 s grid from `start_s`.
fn probs(start_s: f64, values: &[f32]) -> SeizureProbability {
    SeizureProbability {
        patient_id: "p1".into(),
        start_ns: T0 + (start_s * 1e9) as i64,
        step_ns: STEP,
        channels: vec![],
        channel_p: vec![],
        aggregate_p: values.to_vec(),
        model: ModelRef {
            id: "m".into(),
            sha256: "0".repeat(64),
        },
        emitted_ns: T0,
    }
}

fn repeat(p: f32, seconds: f64) -> Vec<f32> {
    vec![p; (seconds * 2.0) as usize]
}

#[test]
fn seizure_raises_after_on_duration_and_resolves_after_off_duration() {
    let mut alerts = PatientAlerts::new("p1", AlertPolicy::default());
    assert!(
        alerts
            .on_probability(&probs(0.0, &repeat(0.9, 9.5)), T0)
            .is_empty(),
        "9.5 s is not enough"
    );
    let raised = alerts.on_probability(&probs(9.5, &repeat(0.9, 0.5)), T0);
    assert_eq!(raised.len(), 1);
    assert_eq!(
        (raised[0].kind, raised[0].transition),
        (AlertKind::Seizure, AlertTransition::Raised)
    );
    assert_eq!(
        raised[0].onset_ns, T0,
        "onset is the first qualifying point"
    );
    assert_eq!(raised[0].evidence.p, Some(0.9));

    // Between the thresholds: neither resolves nor re-raises.
    assert!(alerts
        .on_probability(&probs(10.0, &repeat(0.6, 60.0)), T0)
        .is_empty());
    assert!(alerts
        .on_probability(&probs(70.0, &repeat(0.1, 29.5)), T0)
        .is_empty());
    let resolved = alerts.on_probability(&probs(99.5, &repeat(0.1, 0.5)), T0);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].transition, AlertTransition::Resolved);
    assert_eq!(resolved[0].alert_id, raised[0].alert_id);
}

#[test]
fn not_evaluated_points_neither_raise_nor_resolve() {
    let mut alerts = PatientAlerts::new("p1", AlertPolicy::default());
    let mut values = repeat(0.95, 6.0);
    values.push(f32::NAN);
    values.extend(repeat(0.95, 6.0));
    assert!(
        alerts.on_probability(&probs(0.0, &values), T0).is_empty(),
        "a NaN breaks the run"
    );
    assert_eq!(
        alerts
            .on_probability(&probs(20.0, &repeat(0.95, 10.0)), T0)
            .len(),
        1
    );
    // A long stretch of NaN (signal missing) must not resolve the seizure.
    assert!(alerts
        .on_probability(&probs(30.0, &repeat(f32::NAN, 120.0)), T0)
        .is_empty());
    assert_eq!(alerts.open().filter(|a| !a.is_resolved()).count(), 1);
}

#[test]
fn sustained_burden_needs_a_full_mostly_evaluated_window() {
    let mut alerts = PatientAlerts::new("p1", AlertPolicy::default());
    let events = alerts.on_probability(&probs(0.0, &repeat(0.95, 299.5)), T0);
    assert!(
        events.iter().all(|e| e.kind == AlertKind::Seizure),
        "window not full yet"
    );
    let events = alerts.on_probability(&probs(299.5, &repeat(0.95, 0.5)), T0);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, AlertKind::SustainedSeizureBurden);
    assert_eq!(events[0].evidence.burden, Some(1.0));

    let mut quiet = PatientAlerts::new("p2", AlertPolicy::default());
    let mut values = repeat(0.95, 100.0);
    values.extend(repeat(f32::NAN, 200.0));
    let events = quiet.on_probability(&probs(0.0, &values), T0);
    assert!(
        events
            .iter()
            .all(|e| e.kind != AlertKind::SustainedSeizureBurden),
        "a window that is mostly not evaluated cannot claim a burden"
    );
}

#[test]
fn acknowledgement_is_recorded_once_and_names_the_user() {
    let mut alerts = PatientAlerts::new("p1", AlertPolicy::default());
    let raised = alerts
        .on_probability(&probs(0.0, &repeat(0.9, 10.0)), T0)
        .remove(0);
    let ack = alerts
        .acknowledge(raised.alert_id, "dr-house", T0 + 5)
        .expect("ack");
    assert_eq!(ack.transition, AlertTransition::Acknowledged);
    assert_eq!(ack.by.as_deref(), Some("dr-house"));
    assert_eq!(
        alerts.acknowledge(raised.alert_id, "dr-house", T0 + 6),
        Err(AckError::AlreadyAcknowledged(raised.alert_id))
    );
    assert!(matches!(
        alerts.acknowledge(uuid::Uuid::nil(), "x", T0),
        Err(AckError::Unknown(_))
    ));
    // Resolved and acknowledged: forgotten.
    alerts.on_probability(&probs(10.0, &repeat(0.1, 30.0)), T0);
    assert_eq!(alerts.open().count(), 0);
}

#[test]
fn restart_rebuilds_open_alerts_without_duplicating_them() {
    let mut before = PatientAlerts::new("p1", AlertPolicy::default());
    let mut log = before.on_probability(&probs(0.0, &repeat(0.9, 10.0)), T0);
    let id = log[0].alert_id;
    log.push(before.acknowledge(id, "nurse-1", T0 + 1).expect("ack"));

    let mut after = PatientAlerts::new("p1", AlertPolicy::default());
    for event in &log {
        after.apply(event);
    }
    // The seizure continues: no second raise.
    assert!(after
        .on_probability(&probs(10.0, &repeat(0.9, 20.0)), T0)
        .is_empty());
    // It ends: resolved under the same id, then forgotten (it was acknowledged).
    let resolved = after.on_probability(&probs(30.0, &repeat(0.1, 30.0)), T0);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].alert_id, id);
    assert_eq!(after.open().count(), 0);
    // And escalation does not fire for an acknowledged alert.
    assert!(after.on_tick(T0 + 3_600_000_000_000).is_empty());
}

#[tokio::test(start_paused = true)]
async fn signal_loss_and_escalation_follow_the_clock() {
    let clock = TokioClock::starting_at(T0);
    let mut p1 = PatientAlerts::new("p1", AlertPolicy::default());
    p1.on_samples(clock.now_ns());
    let patients = Arc::new(Mutex::new(HashMap::from([("p1".to_owned(), p1)])));
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let shutdown = CancellationToken::new();
    tokio::spawn(run_ticks(
        patients.clone(),
        clock,
        Duration::from_secs(1),
        tx,
        shutdown.clone(),
    ));

    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        rx.try_recv().is_err(),
        "10 s of silence is still within the limit"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loss = rx.recv().await.expect("signal loss");
    assert_eq!(
        (loss.kind, loss.transition),
        (AlertKind::SignalLoss, AlertTransition::Raised)
    );
    assert_eq!(loss.onset_ns, T0, "onset = last samples");

    // Raised at 11 s; unacknowledged for 300 s (due at 311 s): escalated exactly once.
    tokio::time::sleep(Duration::from_secs(298)).await;
    assert!(rx.try_recv().is_err(), "not yet due at 310 s");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let escalated = rx.recv().await.expect("escalation");
    assert_eq!(
        (escalated.alert_id, escalated.transition),
        (loss.alert_id, AlertTransition::Escalated)
    );
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(rx.try_recv().is_err(), "escalated only once");

    // Samples come back: resolved.
    let resolved = patients
        .lock()
        .expect("lock")
        .get_mut("p1")
        .expect("p1")
        .on_samples(clock.now_ns());
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].transition, AlertTransition::Resolved);
    shutdown.cancel();
}

// --- Early seizure alerting ------------------------------------------------------------

/// Points that become final per chunk step (20 s), and points pending behind them (270 s).
const FINAL_PER_STEP: usize = 40;
const PENDING: usize = 540;

/// Points from grid index `first`.
fn record(first: usize, values: &[f32]) -> SeizureProbability {
    probs(first as f64 * 0.5, values)
}

/// Final values in runs of background, seizure, ambiguous and not-evaluated points.
fn finals() -> impl Strategy<Value = Vec<f32>> {
    let segment = (0..4u8, 1..120usize, 0.0f32..1.0).prop_map(|(class, len, jitter)| {
        let value = match class {
            0 => 0.05 + 0.4 * jitter,
            1 => 0.8 + 0.2 * jitter,
            2 => 0.5 + 0.3 * jitter,
            _ => f32::NAN,
        };
        vec![value; len]
    });
    prop::collection::vec(segment, 1..30).prop_map(|s| s.concat())
}

/// Per point: the provisional lower bound once a first window covered it (`<= final`, NaN when
/// the final is NaN), and after how many steps of pending that first window came.
fn lower_bounds(n: usize) -> impl Strategy<Value = Vec<(f32, usize)>> {
    prop::collection::vec((0.0f32..=1.0, 0..PENDING / FINAL_PER_STEP), n)
}

type Seen = Vec<(AlertKind, AlertTransition, usize, i64)>;

/// Feeds the final values step by step (and, with `early`, the provisional ones after each
/// step); returns (kind, transition, step, onset) of every event.
fn fold(finals: &[f32], bounds: &[(f32, usize)], early: bool) -> Seen {
    let mut alerts = PatientAlerts::new("p1", AlertPolicy::default());
    let mut seen = Vec::new();
    let steps = finals.len().div_ceil(FINAL_PER_STEP) + PENDING / FINAL_PER_STEP + 1;
    let mut fed = 0;
    for step in 0..steps {
        // Points [0, final_end) are final; the next PENDING are covered by some windows.
        let final_end = (step * FINAL_PER_STEP)
            .saturating_sub(PENDING)
            .min(finals.len());
        let now = step as i64;
        let mut events = Vec::new();
        if final_end > fed {
            events.extend(alerts.on_probability(&record(fed, &finals[fed..final_end]), now));
            fed = final_end;
        }
        if early {
            let pending_end = (step * FINAL_PER_STEP).min(finals.len());
            let provisional: Vec<f32> = (fed..pending_end)
                .map(|k| {
                    let (bound, after) = bounds[k];
                    let covered_for = pending_end - k;
                    if covered_for / FINAL_PER_STEP >= after && !finals[k].is_nan() {
                        bound * finals[k]
                    } else {
                        f32::NAN
                    }
                })
                .collect();
            events.extend(alerts.on_provisional(T0 + fed as i64 * STEP, STEP, &provisional, now));
        }
        seen.extend(
            events
                .iter()
                .map(|e| (e.kind, e.transition, e.at_ns as usize, e.onset_ns)),
        );
    }
    seen
}

fn only(seen: &Seen, transition: AlertTransition) -> Seen {
    seen.iter().filter(|e| e.1 == transition).copied().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn early_raises_are_the_final_raises_never_later(
        (finals, bounds) in finals().prop_flat_map(|f| {
            let n = f.len();
            (Just(f), lower_bounds(n))
        })
    ) {
        let final_only = fold(&finals, &bounds, false);
        let with_early = fold(&finals, &bounds, true);
        let (late, early) = (only(&final_only, AlertTransition::Raised), only(&with_early, AlertTransition::Raised));
        prop_assert_eq!(late.len(), early.len(), "same alerts raised: {:?} vs {:?}", late, early);
        for (l, e) in late.iter().zip(&early) {
            prop_assert_eq!(l.0, e.0);
            if l.0 == AlertKind::Seizure {
                prop_assert!(e.2 <= l.2, "raised no later: {:?} vs {:?}", e, l);
                prop_assert!(e.3 >= l.3, "the early onset is within the final run: {:?} vs {:?}", e, l);
            } else {
                prop_assert_eq!(l, e);
            }
        }
        prop_assert_eq!(
            only(&final_only, AlertTransition::Resolved),
            only(&with_early, AlertTransition::Resolved),
            "resolution waits for final values and carries the final onset"
        );
        // An early onset later than the final one is refined by one event, to the final onset.
        let refined: Vec<i64> = only(&with_early, AlertTransition::OnsetRefined).iter().map(|r| r.3).collect();
        let expected: Vec<i64> = late
            .iter()
            .zip(&early)
            .filter(|(l, e)| l.0 == AlertKind::Seizure && e.3 > l.3)
            .map(|(l, _)| l.3)
            .collect();
        prop_assert_eq!(refined, expected, "one onset refinement per early onset after the final one");
        prop_assert!(only(&final_only, AlertTransition::OnsetRefined).is_empty());
    }
}

#[test]
fn a_provisional_run_raises_before_the_points_are_final() {
    let mut alerts = PatientAlerts::new("p1", AlertPolicy::default());
    assert!(alerts.on_probability(&record(0, &[0.1; 10]), 0).is_empty());
    let at = T0 + 10 * STEP;
    // 9 s of qualifying provisional points: not yet the 10 s on-duration.
    assert!(alerts.on_provisional(at, STEP, &[0.9; 18], 1).is_empty());
    // A NaN (not covered yet) breaks the run: nothing is assumed about it.
    let mut gappy = vec![0.9f32; 30];
    gappy[10] = f32::NAN;
    assert!(alerts.on_provisional(at, STEP, &gappy, 2).is_empty());
    let raised = alerts.on_provisional(at, STEP, &[0.9; 20], 3);
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].transition, AlertTransition::Raised);
    assert_eq!(raised[0].onset_ns, at);
    // Raised once: later provisional values of the same run add nothing.
    assert!(alerts.on_provisional(at, STEP, &[0.95; 20], 4).is_empty());
    // The final values confirm it without a second alert; then it resolves on final values.
    assert!(alerts
        .on_probability(&record(10, &[0.95; 20]), 5)
        .is_empty());
    let resolved = alerts.on_probability(&record(30, &[0.1; 60]), 6);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].transition, AlertTransition::Resolved);
    assert_eq!(resolved[0].alert_id, raised[0].alert_id);
}

/// Final values that put the run's start before the early raise's onset refine the alert:
/// one `onset_refined` event under the same id, no second alert, and the resolution carries
/// the refined onset.
#[test]
fn final_values_refine_an_early_alerts_onset() {
    let mut alerts = PatientAlerts::new("p1", AlertPolicy::default());
    assert!(alerts.on_probability(&record(0, &[0.1; 10]), 0).is_empty());
    // Provisional values cover the run from point 20 on; the final ones show it from 14.
    let raised = alerts.on_provisional(T0 + 20 * STEP, STEP, &[0.9; 20], 1);
    assert_eq!(raised.len(), 1);
    let mut finals = vec![0.1f32; 4];
    finals.extend([0.9; 26]);
    let refined = alerts.on_probability(&record(10, &finals), 2);
    assert_eq!(refined.len(), 1, "{refined:?}");
    assert_eq!(refined[0].transition, AlertTransition::OnsetRefined);
    assert_eq!(refined[0].alert_id, raised[0].alert_id);
    assert_eq!(refined[0].onset_ns, T0 + 14 * STEP);
    assert_eq!(raised[0].onset_ns, T0 + 20 * STEP);
    let resolved = alerts.on_probability(&record(40, &[0.1; 60]), 3);
    assert_eq!(resolved.len(), 1);
    assert_eq!(
        (resolved[0].transition, resolved[0].onset_ns),
        (AlertTransition::Resolved, T0 + 14 * STEP)
    );
}

/// Another instance takes the patient over after an early raise: it knows the alert from the
/// alerts topic, and the final points it finalizes first lie before the seizure. They must
/// not resolve it; the final points after the onset do, under the same id.
#[test]
fn a_new_owner_resolves_an_early_alert_only_on_points_after_its_onset() {
    let mut first = PatientAlerts::new("p1", AlertPolicy::default());
    assert!(first.on_probability(&record(0, &[0.1; 10]), 0).is_empty());
    let raised = first.on_provisional(T0 + 100 * STEP, STEP, &[0.9; 20], 1);
    assert_eq!(raised.len(), 1);

    let mut next = PatientAlerts::new("p1", AlertPolicy::default());
    next.apply(&raised[0]);
    assert!(
        next.on_probability(&record(10, &[0.1; 90]), 2).is_empty(),
        "45 s of calm before the onset resolve nothing"
    );
    assert!(next.on_probability(&record(100, &[0.9; 20]), 3).is_empty());
    let resolved = next.on_probability(&record(120, &[0.1; 60]), 4);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].transition, AlertTransition::Resolved);
    assert_eq!(resolved[0].alert_id, raised[0].alert_id);
}

/// The first owner raised a seizure early and resolved it on final values, then died before
/// committing the records: its successor re-evaluates the same burst, from provisional and
/// then final values, and must not raise it again. A later seizure still raises.
#[test]
fn a_new_owner_does_not_raise_a_seizure_its_predecessor_already_alerted() {
    let mut first = PatientAlerts::new("p1", AlertPolicy::default());
    let raised = first.on_provisional(T0 + 100 * STEP, STEP, &[0.9; 20], 1);
    assert_eq!(raised.len(), 1);
    let mut events = first.on_probability(&record(100, &[0.9; 20]), 2);
    events.extend(first.on_probability(&record(120, &[0.1; 60]), 3));
    let resolved = events
        .iter()
        .filter(|e| e.transition == AlertTransition::Resolved);
    assert_eq!(resolved.count(), 1, "{events:?}");

    let mut next = PatientAlerts::new("p1", AlertPolicy::default());
    for event in raised.iter().chain(&events) {
        next.apply(event);
    }
    assert!(
        next.on_provisional(T0 + 100 * STEP, STEP, &[0.9; 20], 4)
            .is_empty(),
        "the provisional values of the alerted burst"
    );
    assert!(
        next.on_probability(&record(100, &[0.9; 20]), 5).is_empty(),
        "its final values"
    );
    assert!(next.on_probability(&record(120, &[0.1; 60]), 6).is_empty());
    let later = next.on_probability(&record(180, &[0.9; 20]), 7);
    assert_eq!(later.len(), 1, "a later seizure: {later:?}");
    assert_eq!(later[0].transition, AlertTransition::Raised);
}

/// An alerted seizure that lasts several on-durations, seen again by a new owner, is still
/// one seizure: neither its provisional nor its final values raise it at any point of it. A
/// new run after it, in the same provisional record, is raised early.
#[test]
fn a_long_seizure_alerted_before_a_move_is_not_raised_from_its_middle() {
    let mut first = PatientAlerts::new("p1", AlertPolicy::default());
    let raised = first.on_provisional(T0 + 100 * STEP, STEP, &[0.9; 20], 1);
    assert_eq!(raised.len(), 1);

    // The successor reads the alert back as raised and resolved.
    let resolved = AlertEvent {
        transition: AlertTransition::Resolved,
        ..raised[0].clone()
    };
    let successor = || {
        let mut next = PatientAlerts::new("p1", AlertPolicy::default());
        next.apply(&raised[0]);
        next.apply(&resolved);
        next
    };
    let mut pending = vec![0.9; 120];
    pending.extend([0.1; 20]);
    pending.extend([0.9; 20]);
    let early = successor().on_provisional(T0 + 100 * STEP, STEP, &pending, 2);
    assert_eq!(early.len(), 1, "only the run after the calm: {early:?}");
    assert_eq!(early[0].onset_ns, T0 + 240 * STEP);
    assert!(
        successor()
            .on_probability(&record(100, &[0.9; 120]), 3)
            .is_empty(),
        "60 s of the alerted seizure's final values"
    );
}

/// An instance that lost the patient's partition stops its wall-clock checks (no signal loss
/// raised for EEG that now goes elsewhere) and forgets its runs, but keeps the open alerts.
#[test]
fn a_released_patient_keeps_its_open_alerts_and_stops_its_checks() {
    let mut alerts = PatientAlerts::new("p1", AlertPolicy::default());
    alerts.on_samples(T0);
    let raised = alerts.on_probability(&record(0, &[0.9; 20]), T0);
    assert_eq!(raised.len(), 1);
    assert!(alerts
        .on_probability(&record(20, &[0.1; 30]), T0)
        .is_empty());
    assert!(alerts.is_fed());

    alerts.release();
    assert!(!alerts.is_fed(), "no wall-clock checks once released");
    assert!(
        alerts
            .on_tick(T0 + 3_600_000_000_000)
            .iter()
            .all(|e| e.kind != AlertKind::SignalLoss),
        "no signal loss raised for a released patient"
    );
    assert_eq!(alerts.open().count(), 1, "the open alert stays");
    // The off-run of 15 s before the release is forgotten: 20 s more do not resolve it yet.
    assert!(alerts
        .on_probability(&record(35, &[0.1; 40]), T0)
        .is_empty());
}
