//! Alert semantics (design.md section 5): hysteresis, NaN handling, burden, acknowledgement,
//! escalation and signal loss with paused tokio time, and rebuild after a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vigil_core::record::{AlertKind, AlertTransition, ModelRef, SeizureProbability};
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
    assert_eq!(alerts.open().filter(|a| !a.resolved).count(), 1);
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
