//! Store scenarios, written once and run on SQLite and on a real MySQL/MariaDB server
//! (`VIGIL_TEST_MYSQL`, see tests/common).

mod common;

use std::collections::BTreeSet;

use common::{alert, chunk, hr, prob, trends, TestDb, PATIENT, SEC, T0};
use uuid::Uuid;
use vigil_core::codec;
use vigil_core::config::RetentionConfig;
use vigil_core::record::{AlertEvidence, AlertKind, AlertTransition, DeadLetter};
use vigil_ingest::{DeviceDirectory, NewDevice, SqlDeviceDirectory};
use vigil_storage::{
    AuditEntry, HistoryQuery, Role, StorageError, Store, StoredDeadLetter, WriteBatch,
};

fn query(patient: &str, limit: u32) -> HistoryQuery {
    HistoryQuery {
        patient_id: patient.into(),
        from_ns: 0,
        to_ns: i64::MAX,
        limit,
        cursor: None,
    }
}

fn full_batch(stream: Uuid, alert_id: Uuid) -> WriteBatch {
    WriteBatch {
        eeg: (0..3).map(|s| chunk(PATIENT, stream, s)).collect(),
        hr: (0..2).map(|s| hr(PATIENT, stream, s)).collect(),
        probabilities: vec![prob(PATIENT, 0, 6)],
        trends: trends(PATIENT, stream, 0, 5),
        alerts: vec![
            alert(
                PATIENT,
                alert_id,
                AlertKind::Seizure,
                AlertTransition::Raised,
                20,
            ),
            alert(
                PATIENT,
                alert_id,
                AlertKind::Seizure,
                AlertTransition::Acknowledged,
                30,
            ),
            alert(
                PATIENT,
                alert_id,
                AlertKind::Seizure,
                AlertTransition::Resolved,
                60,
            ),
        ],
        dead_letters: vec![StoredDeadLetter {
            dlq_topic: "vigil.dlq".into(),
            dlq_partition: 3,
            dlq_offset: 17,
            letter: DeadLetter::new(
                "ingest",
                None,
                b"pat-1",
                b"\x00garbage",
                "malformed EegChunk body",
                T0,
            ),
        }],
        archive: false,
    }
}

async fn scalar(store_url: &str, sql: &str) -> i64 {
    // A plain connection, independent of the store, to look at stored values.
    use sqlx::Connection;
    if store_url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(store_url)
            .await
            .expect("sqlite");
        sqlx::query_scalar(sql).fetch_one(&mut c).await.expect(sql)
    } else {
        let mut c = sqlx::MySqlConnection::connect(store_url)
            .await
            .expect("mysql");
        sqlx::query_scalar(sql).fetch_one(&mut c).await.expect(sql)
    }
}

async fn redelivered_batch_is_stored_once(db: &TestDb) {
    let store = db.store().await;
    store.migrate().await.expect("migrating twice is harmless");
    let stream = Uuid::new_v4();
    let alert_id = Uuid::new_v4();
    let batch = full_batch(stream, alert_id);
    let first = store.write_batch(&batch).await.expect("write");
    assert_eq!(
        (
            first.eeg_chunks,
            first.hr_points,
            first.prob_points,
            first.trend_intervals,
            first.alert_events,
            first.dead_letters
        ),
        (3, 8, 6, 5, 3, 1)
    );
    let counts = store.row_counts().await.expect("counts");
    store.write_batch(&batch).await.expect("redelivery");
    assert_eq!(
        store.row_counts().await.expect("counts"),
        counts,
        "{}: redelivery adds nothing",
        db.kind
    );
    for (table, rows) in [
        ("patients", 1),
        ("eeg_chunks", 3),
        ("hr_points", 8),
        ("seizure_prob", 6),
        ("eeg_trends", 5),
        ("alerts", 1),
        ("alert_events", 3),
        ("dead_letters", 1),
    ] {
        assert_eq!(counts[table], rows, "{}: {table}", db.kind);
    }

    // EEG round trip, bit for bit (NaN samples included).
    let page = store.eeg(&query(PATIENT, 100)).await.expect("eeg");
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.next_cursor, None);
    for (stored, sent) in page.items.iter().zip(&batch.eeg) {
        assert_eq!(
            codec::encode(stored).expect("encode"),
            codec::encode(sent).expect("encode"),
            "{}: chunk {} differs",
            db.kind,
            sent.seq
        );
    }
    // A time window selects the overlapping chunks only.
    let window = HistoryQuery {
        from_ns: T0 + SEC + SEC / 2,
        to_ns: T0 + 2 * SEC + 1,
        ..query(PATIENT, 100)
    };
    let seqs: Vec<u64> = store
        .eeg(&window)
        .await
        .expect("eeg")
        .items
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2]);

    // Heart rate.
    let hr_page = store.heart_rate(&query(PATIENT, 100)).await.expect("hr");
    let sent: Vec<(i64, f32, Option<f32>)> = batch
        .hr
        .iter()
        .flat_map(|b| b.points.iter().map(|p| (p.t_ns, p.bpm, p.rr_ms)))
        .collect();
    let got: Vec<(i64, f32, Option<f32>)> = hr_page
        .items
        .iter()
        .map(|s| (s.t_ns, s.bpm, s.rr_ms))
        .collect();
    assert_eq!(got, sent);
    assert!(hr_page.items.iter().all(|s| s.stream_id == stream));

    // Probabilities: NaN stored as NULL (never 0) and regrouped into the sent record.
    assert_eq!(
        scalar(&db.url, "SELECT COUNT(*) FROM seizure_prob WHERE p IS NULL").await,
        1
    );
    assert_eq!(
        scalar(&db.url, "SELECT COUNT(*) FROM seizure_prob WHERE p = 0").await,
        0
    );
    let probs = store
        .probabilities(&query(PATIENT, 100))
        .await
        .expect("prob");
    assert_eq!(probs.items.len(), 1);
    assert_eq!(
        codec::encode(&probs.items[0]).expect("encode"),
        codec::encode(&batch.probabilities[0]).expect("encode"),
        "{}: probabilities regrouped exactly",
        db.kind
    );

    // Trends: every interval back bit for bit (NaN kept), paged by start time.
    let mut cursor = None;
    let mut served = Vec::new();
    loop {
        let page = store
            .trends(&HistoryQuery {
                cursor: cursor.take(),
                ..query(PATIENT, 2)
            })
            .await
            .expect("trends");
        assert!(page.items.len() <= 2);
        served.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let encoded = |t: &[vigil_core::record::EegTrends]| -> Vec<Vec<u8>> {
        t.iter()
            .map(|r| codec::encode(r).expect("encode"))
            .collect()
    };
    assert_eq!(
        encoded(&served),
        encoded(&batch.trends),
        "{}: trends round trip",
        db.kind
    );
    let window = HistoryQuery {
        from_ns: T0 + 2 * SEC,
        to_ns: T0 + 6 * SEC,
        ..query(PATIENT, 100)
    };
    let starts: Vec<i64> = store
        .trends(&window)
        .await
        .expect("trends window")
        .items
        .iter()
        .map(|t| (t.start_ns - T0) / SEC)
        .collect();
    assert_eq!(starts, vec![2, 4], "intervals starting in [2 s, 6 s)");

    // Alerts with their events; the state is the latest transition.
    let alerts = store.alerts(&query(PATIENT, 10)).await.expect("alerts");
    assert_eq!(alerts.items.len(), 1);
    let a = &alerts.items[0];
    assert_eq!(
        (a.alert_id, a.state, a.last_at_ns),
        (alert_id, AlertTransition::Resolved, T0 + 60 * SEC)
    );
    assert_eq!(a.events, batch.alerts);
    store.close().await;
}

#[tokio::test]
async fn redelivered_batch_is_stored_once_on_both_databases() {
    on_both_databases!(redelivered_batch_is_stored_once);
}

async fn batch_boundaries_do_not_matter(db: &TestDb) {
    let store = db.store().await;
    let stream = Uuid::new_v4();
    // The same 10 chunks, 10 HR batches and 20 probability points, cut into overlapping
    // batches as redelivery after a crash would: every row once.
    for range in [0..3_u64, 2..7, 7..10, 0..10] {
        let batch = WriteBatch {
            eeg: range.clone().map(|s| chunk(PATIENT, stream, s)).collect(),
            hr: range.clone().map(|s| hr(PATIENT, stream, s)).collect(),
            probabilities: vec![prob(
                PATIENT,
                range.start as i64 * 2,
                (range.end - range.start) as usize * 2,
            )],
            ..WriteBatch::default()
        };
        store.write_batch(&batch).await.expect("write");
    }
    // Alert transitions arriving out of order across batches: the latest wins.
    let id = Uuid::new_v4();
    for t in [AlertTransition::Resolved, AlertTransition::Raised] {
        let at = if t == AlertTransition::Raised { 20 } else { 90 };
        store
            .write_batch(&WriteBatch {
                alerts: vec![alert(PATIENT, id, AlertKind::Tachycardia, t, at)],
                ..WriteBatch::default()
            })
            .await
            .expect("alert");
    }
    let counts = store.row_counts().await.expect("counts");
    assert_eq!(counts["eeg_chunks"], 10, "{}", db.kind);
    assert_eq!(counts["hr_points"], 40, "{}", db.kind);
    assert_eq!(counts["seizure_prob"], 20, "{}", db.kind);
    let alerts = store.alerts(&query(PATIENT, 10)).await.expect("alerts");
    assert_eq!(alerts.items[0].state, AlertTransition::Resolved);
    assert_eq!(alerts.items[0].events.len(), 2);

    // An early seizure alert whose onset final values refine: the refinement moves the
    // summary's onset back (never forward) and is kept as an event, but is not a state.
    let early = Uuid::new_v4();
    let mut refined = alert(
        PATIENT,
        early,
        AlertKind::Seizure,
        AlertTransition::OnsetRefined,
        300,
    );
    refined.onset_ns -= 25 * SEC;
    refined.evidence = AlertEvidence::default();
    let mut late = refined.clone();
    late.onset_ns += 40 * SEC;
    late.at_ns += SEC;
    for batch in [
        vec![alert(
            PATIENT,
            early,
            AlertKind::Seizure,
            AlertTransition::Raised,
            30,
        )],
        vec![
            alert(
                PATIENT,
                early,
                AlertKind::Seizure,
                AlertTransition::Acknowledged,
                40,
            ),
            refined.clone(),
        ],
        vec![late],
    ] {
        store
            .write_batch(&WriteBatch {
                alerts: batch,
                ..WriteBatch::default()
            })
            .await
            .expect("alert");
    }
    let seizure = store
        .alerts(&query(PATIENT, 10))
        .await
        .expect("alerts")
        .items
        .into_iter()
        .find(|a| a.alert_id == early)
        .expect("the seizure alert");
    assert_eq!(
        (seizure.state, seizure.onset_ns),
        (AlertTransition::Acknowledged, refined.onset_ns),
        "{}",
        db.kind
    );
    assert_eq!(
        seizure
            .events
            .iter()
            .filter(|e| e.transition == AlertTransition::OnsetRefined)
            .count(),
        2
    );

    // One batch larger than a statement (1,200 points, 300 chunks of 2 KiB blobs).
    let stream2 = Uuid::new_v4();
    let big = WriteBatch {
        hr: (0..300).map(|s| hr("pat-2", stream2, s)).collect(),
        eeg: (0..300).map(|s| chunk("pat-2", stream2, s)).collect(),
        ..WriteBatch::default()
    };
    let summary = store.write_batch(&big).await.expect("big batch");
    assert_eq!((summary.hr_points, summary.eeg_chunks), (1200, 300));
    let counts = store.row_counts().await.expect("counts");
    assert_eq!(counts["hr_points"], 1240);
    assert_eq!(counts["eeg_chunks"], 310);
    store.close().await;
}

#[tokio::test]
async fn batch_boundaries_do_not_matter_on_both_databases() {
    on_both_databases!(batch_boundaries_do_not_matter);
}

async fn cursor_walk_visits_every_row_once(db: &TestDb) {
    let store = db.store().await;
    // Two streams with identical timestamps: ties broken by row id.
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let batch = WriteBatch {
        eeg: (0..13)
            .flat_map(|s| [chunk(PATIENT, a, s), chunk(PATIENT, b, s)])
            .collect(),
        hr: (0..13)
            .flat_map(|s| [hr(PATIENT, a, s), hr(PATIENT, b, s)])
            .collect(),
        probabilities: vec![prob(PATIENT, 0, 25)],
        ..WriteBatch::default()
    };
    store.write_batch(&batch).await.expect("write");

    let mut q = query(PATIENT, 7);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.heart_rate(&q).await.expect("hr page");
        assert!(page.items.len() <= 7);
        seen.extend(page.items.iter().map(|s| (s.stream_id, s.seq, s.t_ns)));
        pages += 1;
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 104, "{}: every point", db.kind);
    assert_eq!(
        seen.iter().collect::<BTreeSet<_>>().len(),
        104,
        "no point twice"
    );
    assert!(seen.windows(2).all(|w| w[0].2 <= w[1].2), "time order");
    assert_eq!(pages, 15);

    let mut q = query(PATIENT, 4);
    let mut chunks = Vec::new();
    loop {
        let page = store.eeg(&q).await.expect("eeg page");
        chunks.extend(page.items.iter().map(|c| (c.stream_id, c.seq)));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(chunks.len(), 26);
    assert_eq!(chunks.iter().collect::<BTreeSet<_>>().len(), 26);

    let mut q = query(PATIENT, 10);
    let mut points = 0;
    loop {
        let page = store.probabilities(&q).await.expect("prob page");
        points += page
            .items
            .iter()
            .map(|r| r.aggregate_p.len())
            .sum::<usize>();
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(points, 25);

    // A cursor from another listing, a bad range and a bad limit are refused.
    let hr_cursor = store
        .heart_rate(&query(PATIENT, 1))
        .await
        .expect("hr")
        .next_cursor;
    let err = store
        .eeg(&HistoryQuery {
            cursor: hr_cursor,
            ..query(PATIENT, 5)
        })
        .await
        .expect_err("foreign cursor");
    assert!(matches!(err, StorageError::BadQuery(_)), "{err}");
    let err = store
        .eeg(&HistoryQuery {
            from_ns: 5,
            to_ns: 5,
            ..query(PATIENT, 5)
        })
        .await
        .expect_err("empty range");
    assert!(matches!(err, StorageError::BadQuery(_)), "{err}");
    assert!(store.eeg(&query(PATIENT, 0)).await.is_err());
    store.close().await;
}

#[tokio::test]
async fn cursor_walk_visits_every_row_once_on_both_databases() {
    on_both_databases!(cursor_walk_visits_every_row_once);
}

async fn users_roles_tokens_and_assignments(db: &TestDb) {
    let store = db.store().await;
    let doc = store
        .create_user("dr.who", "correct horse battery", Role::Clinician)
        .await
        .expect("create");
    assert_eq!(
        (doc.username.as_str(), doc.role),
        ("dr.who", Role::Clinician)
    );
    let err = store
        .create_user("dr.who", "another long password", Role::Admin)
        .await
        .expect_err("duplicate");
    assert!(matches!(err, StorageError::UserExists(_)), "{err}");
    assert!(matches!(
        store.create_user("x", "short", Role::Admin).await,
        Err(StorageError::Invalid {
            field: "password",
            ..
        })
    ));
    let researcher = store
        .create_user("res", "a research password", Role::Researcher)
        .await
        .expect("create");

    assert_eq!(
        store
            .verify_login("dr.who", "correct horse battery")
            .await
            .expect("login"),
        Some(doc.clone())
    );
    assert_eq!(
        store
            .verify_login("dr.who", "wrong password!")
            .await
            .expect("login"),
        None
    );
    assert_eq!(
        store
            .verify_login("nobody", "correct horse battery")
            .await
            .expect("login"),
        None
    );
    assert_eq!(store.user(doc.id).await.expect("user"), Some(doc.clone()));
    assert_eq!(store.user(doc.id + 1000).await.expect("user"), None);

    store.assign(doc.id, "pat-b").await.expect("assign");
    store.assign(doc.id, "pat-a").await.expect("assign");
    store
        .assign(doc.id, "pat-a")
        .await
        .expect("assigning twice is harmless");
    assert_eq!(
        store.assigned_patients(doc.id).await.expect("list"),
        vec!["pat-a", "pat-b"]
    );
    assert!(store.may_read(&doc, "pat-a").await.expect("may_read"));
    assert!(!store.may_read(&doc, "pat-c").await.expect("may_read"));
    assert!(store
        .may_read(&researcher, "pat-c")
        .await
        .expect("may_read"));
    assert!(
        store.assign(doc.id + 1000, "pat-a").await.is_err(),
        "unknown user"
    );

    let token = store.create_api_token(doc.id).await.expect("token");
    assert_eq!(
        store.authenticate_token(&token).await.expect("auth"),
        Some(doc.clone())
    );
    assert_eq!(
        store
            .authenticate_token("vigil_ut_nope")
            .await
            .expect("auth"),
        None
    );
    assert_eq!(store.revoke_api_tokens(doc.id).await.expect("revoke"), 1);
    assert_eq!(store.authenticate_token(&token).await.expect("auth"), None);
    // Only the hash is stored.
    assert_eq!(
        scalar(
            &db.url,
            &format!("SELECT COUNT(*) FROM api_tokens WHERE token_sha256 = '{token}'")
        )
        .await,
        0
    );

    store
        .audit(&AuditEntry {
            user_id: doc.id,
            patient_id: "pat-a".into(),
            action: "read_hr".into(),
            detail: "from_ns=1".into(),
        })
        .await
        .expect("audit");
    let log = store.audit_log(Some("pat-a")).await.expect("log");
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].user_id, log[0].action.as_str()),
        (doc.id, "read_hr")
    );
    store.close().await;
}

#[tokio::test]
async fn users_roles_tokens_and_assignments_on_both_databases() {
    on_both_databases!(users_roles_tokens_and_assignments);
}

async fn retention_deletes_only_old_rows(db: &TestDb) {
    let store = db.store().await;
    let day = 86_400 * SEC;
    let stream = Uuid::new_v4();
    let mut old = full_batch(stream, Uuid::new_v4());
    old.dead_letters.clear();
    // The same data 30 days later, on another stream and alert.
    let later = |mut b: WriteBatch| {
        let s = Uuid::new_v4();
        let a = Uuid::new_v4();
        for c in &mut b.eeg {
            c.stream_id = s;
            c.start_ns += 30 * day;
        }
        for h in &mut b.hr {
            h.stream_id = s;
            for p in &mut h.points {
                p.t_ns += 30 * day;
            }
        }
        for p in &mut b.probabilities {
            p.start_ns += 30 * day;
        }
        for t in &mut b.trends {
            t.stream_id = s;
            t.start_ns += 30 * day;
        }
        for e in &mut b.alerts {
            e.alert_id = a;
            e.at_ns += 30 * day;
            e.onset_ns += 30 * day;
        }
        b
    };
    let new = later(old.clone());
    store.write_batch(&old).await.expect("old");
    store.write_batch(&new).await.expect("new");
    store
        .audit(&AuditEntry {
            user_id: 1,
            patient_id: PATIENT.into(),
            action: "read_eeg".into(),
            detail: String::new(),
        })
        .await
        .expect("audit");

    let config = RetentionConfig {
        eeg_chunks_days: 5,
        hr_points_days: 5,
        seizure_prob_days: 5,
        eeg_trends_days: 5,
        alerts_days: 5,
        dead_letters_days: 5,
        audit_log_days: 0,
        ..RetentionConfig::default()
    };
    let now = T0 + 31 * day;
    let report = vigil_storage::retention::apply(&store, &config, now)
        .await
        .expect("retention");
    assert!(report.contains(&("eeg_chunks", 3)), "{report:?}");
    let counts = store.row_counts().await.expect("counts");
    for (table, rows) in [
        ("eeg_chunks", 3),
        ("hr_points", 8),
        ("seizure_prob", 6),
        ("eeg_trends", 5),
        ("alerts", 1),
        ("alert_events", 3),
        ("audit_log", 1),
    ] {
        assert_eq!(
            counts[table], rows,
            "{}: {table} keeps only the new rows",
            db.kind
        );
    }
    let left = store.eeg(&query(PATIENT, 100)).await.expect("eeg");
    assert!(
        left.items.iter().all(|c| c.start_ns >= T0 + 30 * day),
        "only new chunks left"
    );
    // Running again deletes nothing more; 0 days keeps rows forever.
    vigil_storage::retention::apply(&store, &config, now)
        .await
        .expect("again");
    assert_eq!(store.row_counts().await.expect("counts"), counts);
    let forever = RetentionConfig::default();
    vigil_storage::retention::apply(&store, &forever, i64::MAX)
        .await
        .expect("keep all");
    assert_eq!(store.row_counts().await.expect("counts"), counts);
    let audit_only = RetentionConfig {
        audit_log_days: 1,
        ..RetentionConfig::default()
    };
    vigil_storage::retention::apply(&store, &audit_only, vigil_core::time::now_ns() + 2 * day)
        .await
        .expect("audit retention");
    assert_eq!(store.row_counts().await.expect("counts")["audit_log"], 0);
    store.close().await;
}

#[tokio::test]
async fn retention_deletes_only_old_rows_on_both_databases() {
    on_both_databases!(retention_deletes_only_old_rows);
}

async fn devices_table_is_shared_with_ingest(db: &TestDb) {
    // Storage first, then ingest on the same database, then storage again.
    let store = db.store().await;
    let directory = SqlDeviceDirectory::connect(&db.url)
        .await
        .expect("ingest directory");
    let token = directory
        .register(&NewDevice {
            device_id: "dev-9".into(),
            patient_id: "pat-9".into(),
            sample_rate_hz: Some(256.0),
            channels: Some(vec!["Cz".into()]),
        })
        .await
        .expect("register");
    directory.close().await;
    let again = Store::connect(&db.url).await.expect("storage after ingest");
    assert_eq!(again.row_counts().await.expect("counts")["devices"], 1);
    let stored_hash: i64 = scalar(
        &db.url,
        &format!(
            "SELECT COUNT(*) FROM devices WHERE token_sha256 = '{}'",
            token.sha256().as_str()
        ),
    )
    .await;
    assert_eq!(stored_hash, 1, "{}: same devices table", db.kind);
    again.close().await;
    store.close().await;
}

#[tokio::test]
async fn devices_table_is_shared_with_ingest_on_both_databases() {
    on_both_databases!(devices_table_is_shared_with_ingest);
}

#[tokio::test]
async fn ingest_first_then_storage_migrates_the_same_database() {
    let db = TestDb::sqlite();
    let directory = SqlDeviceDirectory::connect(&db.url)
        .await
        .expect("ingest first");
    directory
        .register(&NewDevice {
            device_id: "dev-1".into(),
            patient_id: "pat-1".into(),
            sample_rate_hz: None,
            channels: None,
        })
        .await
        .expect("register");
    let store = db.store().await;
    assert_eq!(store.row_counts().await.expect("counts")["devices"], 1);
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn bad_urls_are_refused() {
    let err = Store::connect("postgres://x")
        .await
        .expect_err("unsupported");
    assert!(matches!(err, StorageError::BadUrl(_)), "{err}");
}
