//! Shared test fixtures: databases (a fresh SQLite file, or a throw-away database on the
//! MySQL/MariaDB server named by `VIGIL_TEST_MYSQL`) and records.
//!
//! `VIGIL_TEST_MYSQL=mysql://user:pass@host:port` (scripts/test sets it): each test creates
//! `vigil_<random>` and drops it. Without it the MySQL cases are skipped with a note locally,
//! and fail when `CI` is set, so CI can never pass without exercising MariaDB.
#![allow(dead_code)]

use sqlx::Connection;
use tempfile::TempDir;
use uuid::Uuid;
use vigil_core::record::{
    AlertEvent, AlertEvidence, AlertKind, AlertTransition, EegChunk, EegTrends, HrBatch, HrPoint,
    HrSource, ModelRef, MontageKind, SeizureProbability, SideTrends, SignalUnit, TREND_BINS,
};
use vigil_storage::Store;

/// 2024-03-01T00:00:00Z in ns: fixtures use fixed times so days and cursors are stable.
pub const T0: i64 = 1_709_251_200_000_000_000;
pub const SEC: i64 = 1_000_000_000;
pub const PATIENT: &str = "pat-1";
pub const DEVICE: &str = "dev-1";

/// The MySQL server URL, or `None` (skip) when not configured outside CI.
pub fn mysql_server() -> Option<String> {
    match std::env::var("VIGIL_TEST_MYSQL") {
        Ok(url) if !url.is_empty() => Some(url.trim_end_matches('/').to_owned()),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI is set but VIGIL_TEST_MYSQL is not: the MySQL scenarios must run in CI")
        }
        _ => {
            eprintln!(
                "skipped: set VIGIL_TEST_MYSQL=mysql://vigil:vigil@127.0.0.1:3306 to run on MariaDB"
            );
            None
        }
    }
}

/// A test database; dropped (MySQL) or deleted (SQLite) by [`TestDb::cleanup`].
pub struct TestDb {
    pub url: String,
    pub kind: &'static str,
    mysql: Option<(String, String)>,
    _dir: Option<TempDir>,
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("vigil.db").display()
        );
        Self {
            url,
            kind: "sqlite",
            mysql: None,
            _dir: Some(dir),
        }
    }

    /// A fresh database on the MySQL server at `server`.
    pub async fn mysql(server: &str) -> Self {
        let name = format!("vigil_{}", Uuid::new_v4().simple());
        let mut conn = sqlx::MySqlConnection::connect(server)
            .await
            .expect("connect to VIGIL_TEST_MYSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        conn.close().await.expect("close");
        Self {
            url: format!("{server}/{name}"),
            kind: "mysql",
            mysql: Some((server.to_owned(), name)),
            _dir: None,
        }
    }

    /// The database name on the MySQL server.
    pub fn mysql_name(&self) -> Option<&str> {
        self.mysql.as_ref().map(|(_, n)| n.as_str())
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.url).await.expect("connect store")
    }

    pub async fn cleanup(self) {
        if let Some((server, name)) = &self.mysql {
            let mut conn = sqlx::MySqlConnection::connect(server)
                .await
                .expect("connect");
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                .execute(&mut conn)
                .await
                .expect("drop database");
            conn.close().await.expect("close");
        }
    }
}

/// Runs `scenario` on SQLite, then on MySQL when configured.
#[macro_export]
macro_rules! on_both_databases {
    ($scenario:path) => {{
        let db = common::TestDb::sqlite();
        $scenario(&db).await;
        db.cleanup().await;
        if let Some(server) = common::mysql_server() {
            let db = common::TestDb::mysql(&server).await;
            $scenario(&db).await;
            db.cleanup().await;
        }
    }};
}

/// A 1 s, 2-channel, 256 Hz chunk starting at `T0 + seq s`; sample 3 of channel 1 is NaN.
pub fn chunk(patient: &str, stream_id: Uuid, seq: u64) -> EegChunk {
    let n = 256;
    EegChunk {
        patient_id: patient.into(),
        device_id: DEVICE.into(),
        stream_id,
        seq,
        start_ns: T0 + seq as i64 * SEC,
        received_ns: T0 + seq as i64 * SEC + SEC,
        sample_rate_hz: 256.0,
        channels: vec!["Fp1-F7".into(), "F7-T7".into()],
        unit: SignalUnit::Microvolt,
        samples: (0..2)
            .map(|c| {
                (0..n)
                    .map(|i| {
                        if c == 1 && i == 3 {
                            f32::NAN
                        } else {
                            ((i + c * 7 + seq as usize) as f32 * 0.1).sin() * 50.0
                        }
                    })
                    .collect()
            })
            .collect(),
    }
}

/// Heart-rate batch `seq` with 4 points 250 ms apart starting at `T0 + seq s`.
pub fn hr(patient: &str, stream_id: Uuid, seq: u64) -> HrBatch {
    HrBatch {
        patient_id: patient.into(),
        device_id: DEVICE.into(),
        stream_id,
        seq,
        points: (0..4)
            .map(|i| HrPoint {
                t_ns: T0 + seq as i64 * SEC + i * 250_000_000,
                bpm: 60.0 + seq as f32 + i as f32,
                rr_ms: (i % 2 == 0).then_some(800.0 + i as f32),
            })
            .collect(),
        source: HrSource::ChestStrap,
    }
}

/// Probabilities: `n` points from `T0 + start_point * 0.5 s`; point 1 is NaN everywhere.
pub fn prob(patient: &str, start_point: i64, n: usize) -> SeizureProbability {
    let step = SEC / 2;
    let channel_p: Vec<Vec<f32>> = (0..2)
        .map(|c| {
            (0..n)
                .map(|i| {
                    if i == 1 {
                        f32::NAN
                    } else {
                        ((i + c) % 10) as f32 / 10.0
                    }
                })
                .collect()
        })
        .collect();
    let aggregate_p = (0..n)
        .map(|i| {
            if i == 1 {
                f32::NAN
            } else {
                channel_p[0][i].max(channel_p[1][i])
            }
        })
        .collect();
    SeizureProbability {
        patient_id: patient.into(),
        start_ns: T0 + start_point * step,
        step_ns: step,
        channels: vec!["Fp1-F7".into(), "F7-T7".into()],
        channel_p,
        aggregate_p,
        model: ModelRef {
            id: "brainmaze-seizure-modelA".into(),
            sha256: "088c815a10b54435432a0bef2629977d59e655a0c60b48a89e744aa52b6d48e3".into(),
        },
        emitted_ns: T0 + 400 * SEC,
    }
}

/// `n` consecutive 2 s trend intervals from `T0 + 2 s * start`, two regions, NaN marking
/// what was not evaluated (the first interval's aEEG, one CSA bin).
pub fn trends(patient: &str, stream: Uuid, start: i64, n: usize) -> Vec<EegTrends> {
    (0..n as i64)
        .map(|i| {
            let k = start + i;
            let side = |base: f32| SideTrends {
                aeeg_min_uv: if k == 0 { f32::NAN } else { base },
                aeeg_max_uv: if k == 0 { f32::NAN } else { base + 20.0 },
                bsr_percent: (k % 7) as f32,
            };
            EegTrends {
                patient_id: patient.into(),
                stream_id: stream,
                start_ns: T0 + k * 2 * SEC,
                duration_ns: 2 * SEC,
                montage: MontageKind::DoubleBanana,
                regions: vec!["left lateral".into(), "right lateral".into()],
                csa_db: (0..2)
                    .map(|r| {
                        (0..TREND_BINS)
                            .map(|b| {
                                if b == 3 {
                                    f32::NAN
                                } else {
                                    (k + r + b as i64) as f32 * 0.5 - 5.0
                                }
                            })
                            .collect()
                    })
                    .collect(),
                asymmetry: (0..TREND_BINS).map(|b| (b as f32 - 15.0) / 30.0).collect(),
                asymmetry_index: 0.125,
                left: side(10.0),
                right: side(12.0),
                global: side(11.0),
                emitted_ns: T0 + (k + 1) * 2 * SEC,
            }
        })
        .collect()
}

/// One transition of alert `id`.
pub fn alert(
    patient: &str,
    id: Uuid,
    kind: AlertKind,
    transition: AlertTransition,
    at_s: i64,
) -> AlertEvent {
    AlertEvent {
        alert_id: id,
        patient_id: patient.into(),
        kind,
        transition,
        onset_ns: T0 + 10 * SEC,
        at_ns: T0 + at_s * SEC,
        by: (transition == AlertTransition::Acknowledged).then(|| "dr.who".to_owned()),
        evidence: AlertEvidence {
            p: Some(0.5 + at_s as f32 / 1000.0),
            burden: None,
            bpm: Some(120.0),
            // Ictal-tachycardia evidence on seizure alerts, as the inference stage attaches
            // it: stored and read back with the event.
            baseline_bpm: (kind == AlertKind::Seizure).then_some(84.5),
            hr_rise_bpm: (kind == AlertKind::Seizure).then_some(35.5),
            rmssd_ms: (kind == AlertKind::Seizure).then_some(41.25),
        },
    }
}
