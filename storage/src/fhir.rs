//! FHIR R4 export: one `Bundle` (type `collection`) per patient and time range holding
//!
//! - a `Patient` with the Vigil patient id as identifier (Vigil ids may contain `:` and `_`,
//!   which FHIR resource ids do not allow, so resources are linked by `urn:uuid` full URLs);
//! - one vital-signs `Observation` per heart-rate point: LOINC `8867-4` "Heart rate", UCUM
//!   `/min`, `effectiveDateTime` = the point's time;
//! - one `Observation` per seizure alert (`seizure`, `sustained_seizure_burden`): SNOMED CT
//!   `91175000` "Seizure" plus the Vigil alert-kind code, `effectivePeriod` from onset to
//!   resolution, status `preliminary` (an automated detection, not a diagnosis), the highest
//!   probability seen as the value, and the transitions (who acknowledged, when) as a note.

use serde_json::{json, Value};
use uuid::Uuid;
use vigil_core::record::{AlertKind, AlertTransition};

use crate::civil::rfc3339;
use crate::error::StorageError;
use crate::store::Store;
use crate::types::{AlertHistory, HistoryQuery, HrSample, MAX_PAGE_ITEMS};

/// Identifier system of Vigil patient ids.
pub const PATIENT_ID_SYSTEM: &str = "https://vigil.invalid/fhir/sid/patient-id";
/// Identifier system of Vigil alert ids.
pub const ALERT_ID_SYSTEM: &str = "https://vigil.invalid/fhir/sid/alert-id";
/// Identifier system of heart-rate points (`<stream_id>/<seq>/<t_ns>`).
pub const HR_POINT_SYSTEM: &str = "https://vigil.invalid/fhir/sid/hr-point";
/// Code system of Vigil alert kinds.
pub const ALERT_KIND_SYSTEM: &str = "https://vigil.invalid/fhir/CodeSystem/alert-kind";
/// LOINC.
pub const LOINC: &str = "http://loinc.org";
/// SNOMED CT.
pub const SNOMED: &str = "http://snomed.info/sct";
/// UCUM.
pub const UCUM: &str = "http://unitsofmeasure.org";
/// HL7 observation categories.
pub const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The range holds more heart-rate points than one bundle may.
    #[error("more than {max} heart-rate points in the range")]
    TooManyPoints {
        /// Limit.
        max: u32,
    },
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn full_url(id: Uuid) -> String {
    format!("urn:uuid:{id}")
}

/// The heart-rate Observation of one point.
pub fn heart_rate_observation(patient_ref: &str, sample: &HrSample) -> Value {
    json!({
        "resourceType": "Observation",
        "identifier": [{
            "system": HR_POINT_SYSTEM,
            "value": format!("{}/{}/{}", sample.stream_id, sample.seq, sample.t_ns),
        }],
        "status": "final",
        "category": [{
            "coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}]
        }],
        "code": {
            "coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}],
            "text": "Heart rate"
        },
        "subject": {"reference": patient_ref},
        "effectiveDateTime": rfc3339(sample.t_ns),
        "valueQuantity": {
            "value": f64::from(sample.bpm),
            "unit": "beats/minute",
            "system": UCUM,
            "code": "/min"
        },
        "method": {"text": serde_json::to_value(sample.source).unwrap_or(Value::Null)},
    })
}

/// The Observation of one seizure alert, or `None` for other alert kinds.
pub fn seizure_observation(patient_ref: &str, alert: &AlertHistory) -> Option<Value> {
    let (kind_code, kind_display) = match alert.kind {
        AlertKind::Seizure => ("seizure", "Seizure alert (automated detection)"),
        AlertKind::SustainedSeizureBurden => (
            "sustained_seizure_burden",
            "Sustained seizure burden alert (automated detection)",
        ),
        _ => return None,
    };
    let raised_at = alert
        .events
        .iter()
        .find(|e| e.transition == AlertTransition::Raised)
        .map_or(alert.onset_ns, |e| e.at_ns);
    let resolved_at = alert
        .events
        .iter()
        .find(|e| e.transition == AlertTransition::Resolved)
        .map(|e| e.at_ns);
    let mut period = json!({"start": rfc3339(alert.onset_ns)});
    if let Some(end) = resolved_at {
        period["end"] = Value::String(rfc3339(end));
    }
    let transitions: Vec<String> = alert
        .events
        .iter()
        .map(|e| {
            let what = serde_json::to_value(e.transition)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            match &e.by {
                Some(user) => format!("{what} by {user} at {}", rfc3339(e.at_ns)),
                None => format!("{what} at {}", rfc3339(e.at_ns)),
            }
        })
        .collect();
    let mut obs = json!({
        "resourceType": "Observation",
        "identifier": [{"system": ALERT_ID_SYSTEM, "value": alert.alert_id.to_string()}],
        "status": "preliminary",
        "code": {
            "coding": [
                {"system": SNOMED, "code": "91175000", "display": "Seizure"},
                {"system": ALERT_KIND_SYSTEM, "code": kind_code, "display": kind_display}
            ],
            "text": kind_display
        },
        "subject": {"reference": patient_ref},
        "effectivePeriod": period,
        "issued": rfc3339(raised_at),
        "note": [{
            "text": format!(
                "Automated detection by Vigil, not a diagnosis. Transitions: {}.",
                transitions.join("; ")
            )
        }],
    });
    let max_p = alert
        .events
        .iter()
        .filter_map(|e| e.evidence.p)
        .fold(None::<f32>, |m, p| Some(m.map_or(p, |m| m.max(p))));
    if let Some(p) = max_p {
        obs["valueQuantity"] = json!({
            "value": f64::from(p),
            "unit": "probability",
            "system": UCUM,
            "code": "1"
        });
    }
    Some(obs)
}

/// Builds the bundle from already-fetched data.
pub fn bundle(patient_id: &str, hr: &[HrSample], alerts: &[AlertHistory], now_ns: i64) -> Value {
    let patient_url = full_url(Uuid::new_v4());
    let mut entries = vec![json!({
        "fullUrl": patient_url,
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": PATIENT_ID_SYSTEM, "value": patient_id}]
        }
    })];
    for sample in hr {
        entries.push(json!({
            "fullUrl": full_url(Uuid::new_v4()),
            "resource": heart_rate_observation(&patient_url, sample),
        }));
    }
    for alert in alerts {
        if let Some(obs) = seizure_observation(&patient_url, alert) {
            entries.push(json!({"fullUrl": full_url(Uuid::new_v4()), "resource": obs}));
        }
    }
    json!({
        "resourceType": "Bundle",
        "id": Uuid::new_v4().to_string(),
        "meta": {"lastUpdated": rfc3339(now_ns)},
        "type": "collection",
        "timestamp": rfc3339(now_ns),
        "entry": entries,
    })
}

/// Exports the patient's heart rate and seizure alerts in `[q.from_ns, q.to_ns)` (`q.limit`
/// and `q.cursor` are ignored).
pub async fn export(
    store: &Store,
    q: &HistoryQuery,
    max_points: u32,
) -> Result<Value, ExportError> {
    let mut hr = Vec::new();
    let mut query = HistoryQuery {
        limit: MAX_PAGE_ITEMS.min(max_points.saturating_add(1)).max(1),
        cursor: None,
        ..q.clone()
    };
    loop {
        let page = store.heart_rate(&query).await?;
        hr.extend(page.items);
        if hr.len() > max_points as usize {
            return Err(ExportError::TooManyPoints { max: max_points });
        }
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    let mut alerts = Vec::new();
    let mut query = HistoryQuery {
        limit: 1000,
        cursor: None,
        ..q.clone()
    };
    loop {
        let page = store.alerts(&query).await?;
        alerts.extend(page.items);
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    Ok(bundle(
        &q.patient_id,
        &hr,
        &alerts,
        vigil_core::time::now_ns(),
    ))
}
