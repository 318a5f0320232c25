//! The `vigil` binary as a user runs it: configuration layers, clear errors, and `demo`
//! serving its endpoints then stopping cleanly on SIGTERM.

mod common;

use common::{http, http_get};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn vigil() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd.env_remove("VIGIL_CONFIG");
    cmd
}

#[test]
fn config_shows_env_override_over_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("vigil.toml");
    std::fs::write(
        &file,
        "[bus]\npartitions = 6\ntopic_prefix = \"from-file.\"\n",
    )
    .expect("write");
    let out = vigil()
        .arg("--config")
        .arg(&file)
        .arg("config")
        .env("VIGIL__BUS__TOPIC_PREFIX", "from-env.")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("partitions = 6"), "{text}");
    assert!(text.contains("topic_prefix = \"from-env.\""), "{text}");
}

#[test]
fn unknown_config_key_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("vigil.toml");
    std::fs::write(&file, "[bus]\nparitions = 6\n").expect("write");
    let out = vigil()
        .arg("--config")
        .arg(&file)
        .arg("config")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("paritions"), "{err}");
}

#[test]
fn verify_without_fetched_model_says_how_to_fix_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = vigil()
        .args(["models", "verify"])
        .env("VIGIL__MODELS__DIR", dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run `vigil models fetch`"), "{err}");
}

/// The line after `prefix` in the demo's banner, trimmed.
fn banner_value<'a>(banner: &'a [String], prefix: &str) -> &'a str {
    banner
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in the banner: {banner:#?}"))
        .trim()
}

/// Polls `GET path` with `token` until the body contains `needle`.
fn wait_for_body(addr: &str, path: &str, token: &str, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = http_get(addr, path, Some(token));
        if status == 200 && body.contains(needle) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: no {needle:?} in time; last answer {status}: {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `vigil demo` as a newcomer runs it: every stage in one process, the banner's dashboard
/// login works, the simulated patients' EEG and heart rate reach storage through ingest,
/// and SIGTERM stops it cleanly.
#[test]
fn demo_runs_every_stage_and_stops_on_sigterm() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut child = vigil()
        .arg("demo")
        .env("VIGIL__DEMO__LISTEN", "127.0.0.1:0")
        .env("VIGIL__DASHBOARD__LISTEN", "127.0.0.1:0")
        .env("VIGIL__STORAGE__LISTEN", "127.0.0.1:0")
        .env("VIGIL__MODELS__DIR", &models)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(300);
    let addr = loop {
        assert!(Instant::now() < deadline, "demo did not print its address");
        let line = lines.next().expect("demo output").expect("line");
        if let Some(rest) = line.strip_prefix("Vigil demo on http://") {
            break rest.split_whitespace().next().expect("addr").to_owned();
        }
    };
    let banner: Vec<String> = lines
        .by_ref()
        .take(5)
        .map(|l| l.expect("banner line"))
        .collect();
    // Keep draining stdout so the demo never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let dashboard = banner_value(&banner, "Dashboard")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let password = banner_value(&banner, "log in as demo /").to_owned();
    let history = banner_value(&banner, "History API");
    let (history, token) = {
        let addr = history
            .trim_start_matches("http://")
            .split('/')
            .next()
            .expect("history addr");
        let token = history
            .split("Bearer ")
            .nth(1)
            .expect("token")
            .trim_end_matches(')');
        (addr.to_owned(), token.to_owned())
    };

    let (status, body) = http_get(&addr, "/readyz", None);
    assert_eq!(status, 200, "model and bus checks pass: {body}");
    assert!(
        body.contains("\"model\"") && body.contains("\"bus\""),
        "{body}"
    );
    for (server, what) in [
        (&addr, "ingest"),
        (&dashboard, "dashboard"),
        (&history, "storage"),
    ] {
        let (status, body) = http_get(server, "/metrics", None);
        assert_eq!(status, 200, "{what} /metrics: {body}");
    }

    // The printed login works on the dashboard; a wrong password does not.
    let login = |password: &str| {
        http(
            &dashboard,
            "POST",
            "/api/login",
            &[("Content-Type", "application/json")],
            &format!(r#"{{"username":"demo","password":"{password}"}}"#),
        )
    };
    let (status, body) = login(&password);
    assert_eq!(status, 200, "{body}");
    assert!(body.to_ascii_lowercase().contains("set-cookie:"), "{body}");
    let (status, _) = login("not-the-password");
    assert_eq!(status, 401);

    // Samples sent through ingest are stored, with the demo user's token.
    let eeg = wait_for_body(
        &history,
        "/v1/patients/demo-patient-1/eeg?limit=1",
        &token,
        "\"patient_id\":\"demo-patient-1\"",
        Duration::from_secs(60),
    );
    assert!(eeg.contains("\"sample_rate_hz\":256"), "{eeg}");
    wait_for_body(
        &history,
        "/v1/patients/demo-patient-2/hr?limit=5",
        &token,
        "\"bpm\"",
        Duration::from_secs(60),
    );

    let status = common::terminate(&mut child, Duration::from_secs(60));
    assert!(status.success(), "clean exit after SIGTERM: {status}");
}
