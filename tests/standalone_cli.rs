//! `vigil standalone` as an operator runs it on one machine: the four stages in one process,
//! on SQLite and the embedded bus. A chunk sent to the gateway is stored, the embedded
//! broker's consumer lag (read from `/metrics`) falls to 0 once every stage has acknowledged
//! it, and SIGTERM stops every stage cleanly.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, http, http_get, terminate, wait_status};
use vigil_bench::histogram::sample_value;

fn vigil(db_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.env("VIGIL__STORAGE__DATABASE_URL", db_url)
        .env("VIGIL__INGEST__DATABASE_URL", db_url)
        .env("VIGIL__DASHBOARD__DATABASE_URL", db_url)
        .env_remove("VIGIL_CONFIG");
    cmd
}

fn ok_stdout(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

#[test]
fn standalone_runs_every_stage_on_the_embedded_bus_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("v.db").display());
    let run = |args: &[&str]| ok_stdout(vigil(&url).args(args).output().expect("run vigil"));
    run(&["migrate"]);
    run(&["user", "add", "--username", "dr.a", "--patient", "pat-1"]);
    let api_token = run(&["user", "token", "--username", "dr.a"]);
    let device_token = run(&[
        "device",
        "register",
        "--device-id",
        "amp-1",
        "--patient-id",
        "pat-1",
        "--sample-rate-hz",
        "256",
    ]);

    let addr = || format!("127.0.0.1:{}", free_port());
    let (ingest, inference, storage, dashboard) = (addr(), addr(), addr(), addr());
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut child = vigil(&url)
        .arg("standalone")
        .env("VIGIL__BUS__URL", "memory://standalone-cli")
        .env("VIGIL__INGEST__LISTEN", &ingest)
        .env("VIGIL__INFERENCE__LISTEN", &inference)
        .env("VIGIL__STORAGE__LISTEN", &storage)
        .env("VIGIL__DASHBOARD__LISTEN", &dashboard)
        .env("VIGIL__STORAGE__ARCHIVE_DIR", dir.path().join("archive"))
        .env("VIGIL__MODELS__DIR", &models)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn vigil standalone");
    for (what, at) in [
        ("ingest", &ingest),
        ("inference", &inference),
        ("storage", &storage),
        ("dashboard", &dashboard),
    ] {
        let ready = wait_status(at, "/readyz", 200, Duration::from_secs(120));
        assert!(ready.contains("\"bus\""), "{what}: {ready}");
    }

    let stream_id = uuid::Uuid::new_v4();
    let start_ns = vigil_core::time::now_ns();
    let samples: Vec<String> = (0..256)
        .map(|i| format!("{:.1}", (i % 17) as f64))
        .collect();
    let body = format!(
        r#"{{"patient_id":"pat-1","device_id":"amp-1","stream_id":"{stream_id}","seq":0,"start_ns":{start_ns},"sample_rate_hz":256,"channels":["Cz","Pz"],"samples":[[{0}],[{0}]]}}"#,
        samples.join(",")
    );
    let bearer = format!("Bearer {device_token}");
    let (status, answer) = http(
        &ingest,
        "POST",
        "/v1/eeg",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    assert_eq!(status, 202, "{answer}");

    // Stored through the embedded bus, then every group has acknowledged everything.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, stored) = http_get(&storage, "/v1/patients/pat-1/eeg", Some(&api_token));
        let (_, metrics) = http_get(&inference, "/metrics", None);
        let lags = ["vigil-inference", "vigil-storage"]
            .map(|g| sample_value(&metrics, "vigil_bus_group_lag_records", &[("group", g)]));
        if status == 200 && stored.contains(&stream_id.to_string()) && lags == [Some(0.0); 2] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not stored or not acknowledged in time: {status} {stored}\nlags {lags:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(status.success(), "clean exit after SIGTERM: {status}");
}
