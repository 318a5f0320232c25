//! The alert lifecycle as a fold of `vigil.alerts` events, written once for every stage that
//! keeps open alerts: inference (which raises, escalates and resolves them, and rebuilds its
//! state from the topic on restart) and the dashboard (which shows them and acknowledges).
//!
//! An alert opens with its `raised` event; later events of the same `alert_id` mark it
//! acknowledged (first acknowledgement wins), escalated or resolved, and carry the latest
//! evidence. An alert both acknowledged and resolved is closed and forgotten. Events of an
//! unknown alert (closed already, or older than the book) change nothing, and a repeated
//! `raised` keeps the first one: folding the topic again gives the same book.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::record::{AlertEvent, AlertEvidence, AlertKind, AlertTransition};

/// One open alert: its identity and where it is in its lifecycle.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAlert {
    /// Id shared by all its events.
    pub alert_id: Uuid,
    /// Condition.
    pub kind: AlertKind,
    /// Signal time the condition began, UTC ns.
    pub onset_ns: i64,
    /// When it was raised, UTC ns (the escalation timer's start).
    pub raised_at_ns: i64,
    /// Who acknowledged it and when, once acknowledged.
    pub acknowledged: Option<(Option<String>, i64)>,
    /// Escalated already.
    pub escalated: bool,
    /// When the condition ended, once it did.
    pub resolved_at_ns: Option<i64>,
    /// Measurements behind the latest transition that carried any.
    pub evidence: AlertEvidence,
}

impl OpenAlert {
    /// Acknowledged by a clinician.
    pub fn is_acknowledged(&self) -> bool {
        self.acknowledged.is_some()
    }

    /// The condition has ended.
    pub fn is_resolved(&self) -> bool {
        self.resolved_at_ns.is_some()
    }
}

/// The open alerts of one patient (or of any set of events folded together).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenAlerts {
    open: BTreeMap<Uuid, OpenAlert>,
}

impl OpenAlerts {
    /// Folds one event into the book.
    pub fn apply(&mut self, event: &AlertEvent) {
        if event.transition == AlertTransition::Raised {
            self.open.entry(event.alert_id).or_insert(OpenAlert {
                alert_id: event.alert_id,
                kind: event.kind,
                onset_ns: event.onset_ns,
                raised_at_ns: event.at_ns,
                acknowledged: None,
                escalated: false,
                resolved_at_ns: None,
                evidence: event.evidence,
            });
            return;
        }
        let Some(alert) = self.open.get_mut(&event.alert_id) else {
            return;
        };
        match event.transition {
            AlertTransition::Acknowledged => {
                if alert.acknowledged.is_none() {
                    alert.acknowledged = Some((event.by.clone(), event.at_ns));
                }
            }
            AlertTransition::Escalated => alert.escalated = true,
            AlertTransition::Resolved => alert.resolved_at_ns = Some(event.at_ns),
            AlertTransition::OnsetRefined => alert.onset_ns = alert.onset_ns.min(event.onset_ns),
            AlertTransition::Raised => {}
        }
        if event.evidence != AlertEvidence::default() {
            alert.evidence = event.evidence;
        }
        if alert.is_acknowledged() && alert.is_resolved() {
            self.open.remove(&event.alert_id);
        }
    }

    /// The open alert with this id.
    pub fn get(&self, alert_id: &Uuid) -> Option<&OpenAlert> {
        self.open.get(alert_id)
    }

    /// Open alerts, by id.
    pub fn iter(&self) -> impl Iterator<Item = &OpenAlert> {
        self.open.values()
    }

    /// No alert is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u128, transition: AlertTransition, at_ns: i64) -> AlertEvent {
        AlertEvent {
            alert_id: Uuid::from_u128(id),
            patient_id: "p".into(),
            kind: AlertKind::Seizure,
            transition,
            onset_ns: 5,
            at_ns,
            by: (transition == AlertTransition::Acknowledged).then(|| format!("dr{at_ns}")),
            evidence: AlertEvidence::default(),
        }
    }

    #[test]
    fn an_alert_closes_when_acknowledged_and_resolved_in_either_order() {
        for order in [
            [AlertTransition::Acknowledged, AlertTransition::Resolved],
            [AlertTransition::Resolved, AlertTransition::Acknowledged],
        ] {
            let mut book = OpenAlerts::default();
            book.apply(&event(1, AlertTransition::Raised, 10));
            book.apply(&event(1, order[0], 20));
            let open = book.get(&Uuid::from_u128(1)).expect("still open");
            assert_eq!(open.raised_at_ns, 10);
            assert_eq!(
                open.is_acknowledged(),
                order[0] == AlertTransition::Acknowledged
            );
            assert_eq!(open.is_resolved(), order[0] == AlertTransition::Resolved);
            book.apply(&event(1, order[1], 30));
            assert!(book.is_empty(), "closed after {order:?}");
        }
    }

    #[test]
    fn an_onset_refinement_moves_the_onset_back_and_changes_no_state() {
        let mut book = OpenAlerts::default();
        book.apply(&event(1, AlertTransition::Raised, 10));
        let mut refined = event(1, AlertTransition::OnsetRefined, 40);
        refined.onset_ns = 2;
        book.apply(&refined);
        refined.onset_ns = 4;
        book.apply(&refined);
        let open = book.get(&Uuid::from_u128(1)).expect("open");
        assert_eq!(open.onset_ns, 2, "only ever earlier");
        assert!(!open.is_acknowledged() && !open.is_resolved() && !open.escalated);
        assert_eq!(open.raised_at_ns, 10);
    }

    #[test]
    fn first_raise_and_first_acknowledgement_win_and_unknown_alerts_are_ignored() {
        let mut book = OpenAlerts::default();
        book.apply(&event(2, AlertTransition::Escalated, 1));
        assert!(
            book.is_empty(),
            "an event of an unknown alert opens nothing"
        );
        book.apply(&event(1, AlertTransition::Raised, 10));
        book.apply(&event(1, AlertTransition::Raised, 99));
        book.apply(&event(1, AlertTransition::Acknowledged, 20));
        book.apply(&event(1, AlertTransition::Acknowledged, 25));
        book.apply(&event(1, AlertTransition::Escalated, 30));
        let mut with_evidence = event(1, AlertTransition::Escalated, 31);
        with_evidence.evidence.p = Some(0.9);
        book.apply(&with_evidence);
        book.apply(&event(1, AlertTransition::Escalated, 32));
        let open = book.get(&Uuid::from_u128(1)).expect("open");
        assert_eq!(open.raised_at_ns, 10);
        assert_eq!(open.acknowledged, Some((Some("dr20".into()), 20)));
        assert!(open.escalated);
        assert_eq!(
            open.evidence.p,
            Some(0.9),
            "evidence-less events keep the last evidence"
        );
        assert_eq!(book.iter().count(), 1);
    }
}
