//! History + FHIR API scenarios over `app()` with tower oneshot, on SQLite and MariaDB:
//! auth (401), access rules (403 for an unassigned patient), one audit row per read, cursor
//! pages over HTTP, problem+json errors, the OpenAPI document and the FHIR R4 structure.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::{alert, hr, prob, TestDb, PATIENT, SEC, T0};
use serde_json::Value;
use tower::ServiceExt;
use uuid::Uuid;
use vigil_core::config::StorageConfig;
use vigil_core::record::{AlertKind, AlertTransition};
use vigil_core::telemetry::Readiness;
use vigil_storage::api::{app, ApiState};
use vigil_storage::{Role, Store, WriteBatch};

async fn get(router: &Router, path: &str, token: Option<&str>) -> (StatusCode, String, Value) {
    let mut req = Request::get(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let response = router
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .expect("body");
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, content_type, json)
}

struct Fixture {
    router: Router,
    store: Store,
    clinician: String,
    researcher: String,
    clinician_id: i64,
}

async fn fixture(db: &TestDb) -> Fixture {
    let store = db.store().await;
    let stream = Uuid::new_v4();
    let seizure = Uuid::new_v4();
    let tachy = Uuid::new_v4();
    store
        .write_batch(&WriteBatch {
            eeg: (0..5).map(|s| common::chunk(PATIENT, stream, s)).collect(),
            hr: (0..5).map(|s| hr(PATIENT, stream, s)).collect(),
            probabilities: vec![prob(PATIENT, 0, 8)],
            trends: common::trends(PATIENT, stream, 0, 3),
            alerts: vec![
                alert(
                    PATIENT,
                    seizure,
                    AlertKind::Seizure,
                    AlertTransition::Raised,
                    20,
                ),
                alert(
                    PATIENT,
                    seizure,
                    AlertKind::Seizure,
                    AlertTransition::Acknowledged,
                    25,
                ),
                alert(
                    PATIENT,
                    seizure,
                    AlertKind::Seizure,
                    AlertTransition::Resolved,
                    60,
                ),
                alert(
                    PATIENT,
                    tachy,
                    AlertKind::Tachycardia,
                    AlertTransition::Raised,
                    30,
                ),
            ],
            ..WriteBatch::default()
        })
        .await
        .expect("write");
    store
        .write_batch(&WriteBatch {
            hr: vec![hr("pat-other", Uuid::new_v4(), 0)],
            ..WriteBatch::default()
        })
        .await
        .expect("write other");
    let doc = store
        .create_user("dr.who", "correct horse battery", Role::Clinician)
        .await
        .expect("user");
    store.assign(doc.id, PATIENT).await.expect("assign");
    let res = store
        .create_user("res", "research password", Role::Researcher)
        .await
        .expect("user");
    let clinician = store.create_api_token(doc.id).await.expect("token");
    let researcher = store.create_api_token(res.id).await.expect("token");
    let readiness = Readiness::default();
    readiness.set("database", true, "connected");
    let router = app(ApiState::new(
        store.clone(),
        readiness,
        &StorageConfig::default(),
    ));
    Fixture {
        router,
        store,
        clinician,
        researcher,
        clinician_id: doc.id,
    }
}

async fn access_rules_and_audit(db: &TestDb) {
    let f = fixture(db).await;
    let path = format!("/v1/patients/{PATIENT}/hr");

    let (status, ct, body) = get(&f.router, &path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(ct, "application/problem+json");
    assert_eq!(body["status"], 401);
    let (status, _, _) = get(&f.router, &path, Some("vigil_ut_forged")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, _, body) = get(&f.router, &path, Some(&f.clinician)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(20));

    let (status, ct, body) = get(&f.router, "/v1/patients/pat-other/hr", Some(&f.clinician)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "{}: unassigned patient",
        db.kind
    );
    assert_eq!(ct, "application/problem+json");
    assert_eq!(body["type"], "https://vigil.invalid/problems/forbidden");
    assert!(
        body["detail"].as_str().unwrap_or("").contains("pat-other"),
        "{body}"
    );
    let (status, _, _) = get(&f.router, "/v1/patients/pat-other/hr", Some(&f.researcher)).await;
    assert_eq!(status, StatusCode::OK, "researchers read every patient");

    // One audit row per successful read, none for refused ones.
    for kind in ["eeg", "probabilities", "trends", "alerts", "fhir"] {
        let (status, _, body) = get(
            &f.router,
            &format!("/v1/patients/{PATIENT}/{kind}"),
            Some(&f.clinician),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{kind}: {body}");
    }
    let log = f.store.audit_log(Some(PATIENT)).await.expect("audit");
    let actions: Vec<(&str, i64)> = log.iter().map(|r| (r.action.as_str(), r.user_id)).collect();
    assert_eq!(
        actions,
        vec![
            ("read_hr", f.clinician_id),
            ("read_eeg", f.clinician_id),
            ("read_probabilities", f.clinician_id),
            ("read_trends", f.clinician_id),
            ("read_alerts", f.clinician_id),
            ("fhir_export", f.clinician_id),
        ],
        "{}",
        db.kind
    );
    assert_eq!(
        f.store
            .audit_log(Some("pat-other"))
            .await
            .expect("audit")
            .len(),
        1,
        "the researcher's read"
    );

    let (status, _, body) = get(&f.router, "/v1/patients", Some(&f.clinician)).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["patient_id"].as_str())
        .collect();
    assert_eq!(ids, vec![PATIENT], "clinicians list assigned patients only");
    let (_, _, body) = get(&f.router, "/v1/patients", Some(&f.researcher)).await;
    assert_eq!(body["items"].as_array().map(Vec::len), Some(2));
    f.store.close().await;
}

#[tokio::test]
async fn access_rules_and_audit_on_both_databases() {
    on_both_databases!(access_rules_and_audit);
}

async fn pages_over_http(db: &TestDb) {
    let f = fixture(db).await;
    let mut cursor: Option<String> = None;
    let mut times = Vec::new();
    loop {
        let mut path = format!("/v1/patients/{PATIENT}/hr?limit=6&from_ns={T0}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, _, body) = get(&f.router, &path, Some(&f.clinician)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        times.extend(
            body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|s| s["t_ns"].as_i64()),
        );
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(times.len(), 20);

    // EEG: NaN samples come back as null; downsampling halves the samples.
    let (status, _, body) = get(
        &f.router,
        &format!("/v1/patients/{PATIENT}/eeg?limit=2"),
        Some(&f.clinician),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["items"][0]["samples"][1][3],
        Value::Null,
        "NaN sample -> null"
    );
    assert!(body["next_cursor"].is_string());
    let (_, _, body) = get(
        &f.router,
        &format!("/v1/patients/{PATIENT}/eeg?limit=1&max_rate_hz=128"),
        Some(&f.clinician),
    )
    .await;
    assert_eq!(body["items"][0]["sample_rate_hz"], 128.0);
    assert_eq!(
        body["items"][0]["samples"][0].as_array().map(Vec::len),
        Some(128)
    );

    // Probabilities: not-evaluated points are null, never 0.
    let (_, _, body) = get(
        &f.router,
        &format!("/v1/patients/{PATIENT}/probabilities"),
        Some(&f.clinician),
    )
    .await;
    assert_eq!(body["items"][0]["aggregate_p"][1], Value::Null);
    assert_eq!(
        body["items"][0]["aggregate_p"].as_array().map(Vec::len),
        Some(8)
    );

    // Trends: not-evaluated values are null, never 0; the montage and regions are named.
    let (_, _, body) = get(
        &f.router,
        &format!("/v1/patients/{PATIENT}/trends?limit=2"),
        Some(&f.clinician),
    )
    .await;
    let items = body["items"].as_array().expect("trend items");
    assert_eq!(items.len(), 2, "{body}");
    assert!(body["next_cursor"].is_string(), "a third interval follows");
    assert_eq!(items[0]["montage"], "double_banana");
    assert_eq!(items[0]["regions"][1], "right lateral");
    assert_eq!(items[0]["left"]["aeeg_min_uv"], Value::Null);
    assert_eq!(items[1]["left"]["aeeg_min_uv"], 10.0);
    assert_eq!(items[0]["csa_db"][0][3], Value::Null);
    assert_eq!(items[0]["csa_db"][0].as_array().map(Vec::len), Some(30));

    // Alerts with their events.
    let (_, _, body) = get(
        &f.router,
        &format!("/v1/patients/{PATIENT}/alerts"),
        Some(&f.clinician),
    )
    .await;
    let alerts = body["items"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["state"], "resolved");
    assert_eq!(alerts[0]["events"].as_array().map(Vec::len), Some(3));

    // Bad parameters are 400 problems, not panics.
    for bad in [
        format!("/v1/patients/{PATIENT}/hr?cursor=garbage"),
        format!("/v1/patients/{PATIENT}/hr?from_ns=10&to_ns=5"),
        format!("/v1/patients/{PATIENT}/hr?limit=abc"),
        format!("/v1/patients/{PATIENT}/hr?unknown=1"),
        format!("/v1/patients/{PATIENT}/eeg?max_rate_hz=-1"),
        "/v1/patients/bad%20id/hr".to_owned(),
    ] {
        let (status, ct, body) = get(&f.router, &bad, Some(&f.researcher)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(ct, "application/problem+json", "{bad}");
    }
    f.store.close().await;
}

#[tokio::test]
async fn pages_over_http_on_both_databases() {
    on_both_databases!(pages_over_http);
}

/// A focused structural validator for the FHIR R4 parts the export uses: Bundle (type
/// collection), Patient and Observation, per the R4 JSON rules (resourceType, required
/// elements and cardinalities, value sets of `status`, code systems as URIs, the `dateTime`/
/// `instant` formats, `urn:uuid` full URLs and references that resolve inside the bundle).
fn validate_r4_bundle(bundle: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let mut err = |e: String| errors.push(e);
    let uuid_urn = |s: &str| {
        s.strip_prefix("urn:uuid:")
            .is_some_and(|u| Uuid::parse_str(u).is_ok() && u.len() == 36)
    };
    // R4 instant: YYYY-MM-DDThh:mm:ss(.sss)?(Z|+hh:mm)
    let instant = |s: &str| {
        let b = s.as_bytes();
        b.len() >= 20
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && s.ends_with('Z')
            && s[..4].bytes().all(|c| c.is_ascii_digit())
            && (b.len() == 20
                || (b[19] == b'.'
                    && s[20..s.len() - 1].bytes().all(|c| c.is_ascii_digit())
                    && b.len() > 21))
    };
    if bundle["resourceType"] != "Bundle" {
        err("resourceType must be Bundle".into());
    }
    if bundle["type"] != "collection" {
        err("Bundle.type must be collection".into());
    }
    if bundle.get("total").is_some() {
        err("Bundle.total only allowed for searchset/history (bdl-1)".into());
    }
    if !bundle["timestamp"].as_str().is_some_and(instant) {
        err(format!(
            "Bundle.timestamp {} is not an instant",
            bundle["timestamp"]
        ));
    }
    let Some(entries) = bundle["entry"].as_array() else {
        err("Bundle.entry missing".into());
        return errors;
    };
    let urls: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["fullUrl"].as_str())
        .collect();
    let mut unique = urls.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != entries.len() {
        err("every entry needs a unique fullUrl (bdl-7)".into());
    }
    for (i, entry) in entries.iter().enumerate() {
        let Some(full_url) = entry["fullUrl"].as_str() else {
            continue;
        };
        if !uuid_urn(full_url) {
            err(format!(
                "entry {i}: fullUrl {full_url} is not urn:uuid:<uuid>"
            ));
        }
        let r = &entry["resource"];
        let allowed: &[&str] = match r["resourceType"].as_str() {
            Some("Patient") => &["resourceType", "identifier"],
            Some("Observation") => &[
                "resourceType",
                "identifier",
                "status",
                "category",
                "code",
                "subject",
                "effectiveDateTime",
                "effectivePeriod",
                "issued",
                "valueQuantity",
                "note",
                "method",
            ],
            other => {
                err(format!("entry {i}: unexpected resourceType {other:?}"));
                continue;
            }
        };
        for key in r
            .as_object()
            .map(|o| o.keys().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if !allowed.contains(&key.as_str()) {
                err(format!("entry {i}: unknown or unexpected element {key}"));
            }
        }
        if let Some(ids) = r["identifier"].as_array() {
            for id in ids {
                if !id["system"].as_str().is_some_and(|s| s.starts_with("http"))
                    || !id["value"].is_string()
                {
                    err(format!(
                        "entry {i}: identifier needs a URI system and a value"
                    ));
                }
            }
        }
        if r["resourceType"] != "Observation" {
            continue;
        }
        if ![
            "registered",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "cancelled",
            "entered-in-error",
            "unknown",
        ]
        .contains(&r["status"].as_str().unwrap_or(""))
        {
            err(format!(
                "entry {i}: Observation.status {} not in the R4 value set",
                r["status"]
            ));
        }
        let codings = r["code"]["coding"].as_array();
        if !codings.is_some_and(|c| {
            !c.is_empty()
                && c.iter().all(|c| {
                    c["system"].as_str().is_some_and(|s| s.starts_with("http"))
                        && c["code"]
                            .as_str()
                            .is_some_and(|s| !s.is_empty() && s.trim() == s)
                })
        }) {
            err(format!(
                "entry {i}: Observation.code needs codings with system URI and code"
            ));
        }
        let reference = r["subject"]["reference"].as_str().unwrap_or("");
        let target = entries.iter().find(|e| e["fullUrl"] == reference);
        if !target.is_some_and(|t| t["resource"]["resourceType"] == "Patient") {
            err(format!(
                "entry {i}: subject {reference:?} does not resolve to a Patient in the bundle"
            ));
        }
        match (r.get("effectiveDateTime"), r.get("effectivePeriod")) {
            (Some(dt), None) => {
                if !dt.as_str().is_some_and(instant) {
                    err(format!("entry {i}: effectiveDateTime {dt}"));
                }
            }
            (None, Some(p)) => {
                if !p["start"].as_str().is_some_and(instant)
                    || p.get("end")
                        .is_some_and(|e| !e.as_str().is_some_and(instant))
                {
                    err(format!("entry {i}: effectivePeriod {p}"));
                }
            }
            _ => err(format!("entry {i}: exactly one effective[x] expected here")),
        }
        if let Some(q) = r.get("valueQuantity") {
            if !q["value"].is_number()
                || q["system"] != "http://unitsofmeasure.org"
                || !q["code"].is_string()
            {
                err(format!(
                    "entry {i}: valueQuantity must carry a number and a UCUM code"
                ));
            }
        }
        if let Some(issued) = r.get("issued") {
            if !issued.as_str().is_some_and(instant) {
                err(format!("entry {i}: issued {issued}"));
            }
        }
        let is_hr = codings.is_some_and(|c| {
            c.iter()
                .any(|c| c["system"] == "http://loinc.org" && c["code"] == "8867-4")
        });
        if is_hr {
            let q = &r["valueQuantity"];
            if q["code"] != "/min" || r["status"] != "final" {
                err(format!("entry {i}: heart rate must be UCUM /min and final"));
            }
            let vital = r["category"][0]["coding"][0]["code"] == "vital-signs";
            if !vital {
                err(format!(
                    "entry {i}: heart rate must be in category vital-signs"
                ));
            }
        }
    }
    errors
}

async fn fhir_export_is_valid_r4(db: &TestDb) {
    let f = fixture(db).await;
    let (status, ct, bundle) = get(
        &f.router,
        &format!(
            "/v1/patients/{PATIENT}/fhir?from_ns={}&to_ns={}",
            T0 + 2 * SEC,
            T0 + 11 * SEC
        ),
        Some(&f.clinician),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(ct, "application/fhir+json");
    let errors = validate_r4_bundle(&bundle);
    assert!(errors.is_empty(), "{}: {errors:#?}\n{bundle:#}", db.kind);
    let entries = bundle["entry"].as_array().expect("entries");
    let hr_obs: Vec<&Value> = entries
        .iter()
        .filter(|e| e["resource"]["code"]["coding"][0]["code"] == "8867-4")
        .collect();
    assert_eq!(
        hr_obs.len(),
        12,
        "the 3 s of 4 Hz heart rate stored in the range"
    );
    assert_eq!(hr_obs[0]["resource"]["valueQuantity"]["value"], 62.0);
    assert_eq!(
        hr_obs[0]["resource"]["effectiveDateTime"],
        "2024-03-01T00:00:02Z"
    );
    let seizures: Vec<&Value> = entries
        .iter()
        .filter(|e| e["resource"]["code"]["coding"][0]["code"] == "91175000")
        .collect();
    assert_eq!(
        seizures.len(),
        1,
        "the seizure alert, not the tachycardia one"
    );
    let s = &seizures[0]["resource"];
    assert_eq!(s["status"], "preliminary");
    assert_eq!(s["effectivePeriod"]["start"], "2024-03-01T00:00:10Z");
    assert_eq!(s["effectivePeriod"]["end"], "2024-03-01T00:01:00Z");
    assert!(s["note"][0]["text"]
        .as_str()
        .unwrap_or("")
        .contains("acknowledged by dr.who"));

    // The validator itself catches what it is meant to catch.
    let mut broken = bundle.clone();
    broken["entry"][1]["resource"]["status"] = "done".into();
    broken["entry"][1]["resource"]["subject"]["reference"] = "Patient/pat-1".into();
    broken["entry"][2]["resource"]["valueQuantity"]["system"] = "ucum".into();
    broken["type"] = "document".into();
    let found = validate_r4_bundle(&broken);
    for expected in [
        "Bundle.type must be collection",
        "entry 1: Observation.status \"done\" not in the R4 value set",
        "entry 1: subject \"Patient/pat-1\" does not resolve to a Patient in the bundle",
        "entry 1: heart rate must be UCUM /min and final",
        "entry 2: valueQuantity must carry a number and a UCUM code",
    ] {
        assert!(
            found.iter().any(|e| e == expected),
            "{expected}: {found:#?}"
        );
    }
    assert_eq!(found.len(), 5, "{found:#?}");

    // Too large a range is refused with a problem, not truncated silently.
    let config = StorageConfig {
        max_fhir_entries: 5,
        ..StorageConfig::default()
    };
    let small = app(ApiState::new(
        f.store.clone(),
        Readiness::default(),
        &config,
    ));
    let (status, ct, body) = get(
        &small,
        &format!("/v1/patients/{PATIENT}/fhir"),
        Some(&f.clinician),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(ct, "application/problem+json");
    f.store.close().await;
}

#[tokio::test]
async fn fhir_export_is_valid_r4_on_both_databases() {
    on_both_databases!(fhir_export_is_valid_r4);
}

#[tokio::test]
async fn openapi_and_ops_endpoints() {
    let db = TestDb::sqlite();
    let f = fixture(&db).await;
    let (status, _, doc) = get(&f.router, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/v1/patients",
        "/v1/patients/{patient_id}/eeg",
        "/v1/patients/{patient_id}/hr",
        "/v1/patients/{patient_id}/probabilities",
        "/v1/patients/{patient_id}/trends",
        "/v1/patients/{patient_id}/alerts",
        "/v1/patients/{patient_id}/fhir",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} documented");
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    let (status, _, _) = get(&f.router, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = get(&f.router, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    f.store.close().await;
    db.cleanup().await;
}
