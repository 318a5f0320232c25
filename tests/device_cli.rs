//! `vigil device register|revoke` end to end on a SQLite directory.

use std::process::{Command, Output};

fn vigil(db_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .env("VIGIL__INGEST__DATABASE_URL", db_url)
        .env_remove("VIGIL_CONFIG")
        .output()
        .expect("run vigil")
}

#[test]
fn register_prints_the_token_once_and_revoke_disables_the_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("d.db").display());
    let out = vigil(
        &url,
        &[
            "device",
            "register",
            "--device-id",
            "amp-1",
            "--patient-id",
            "pat-1",
            "--sample-rate-hz",
            "256",
            "--channels",
            "Fp1-F7,F7-T7",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    let token = stdout.trim();
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout is the token alone: {stdout:?}"
    );
    assert!(
        token.starts_with("vigil_dt_") && token.len() > 40,
        "{token}"
    );

    let again = vigil(
        &url,
        &[
            "device",
            "register",
            "--device-id",
            "amp-1",
            "--patient-id",
            "pat-1",
        ],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already registered"));

    let revoke = vigil(&url, &["device", "revoke", "--device-id", "amp-1"]);
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let twice = vigil(&url, &["device", "revoke", "--device-id", "amp-1"]);
    assert!(!twice.status.success());
    assert!(String::from_utf8_lossy(&twice.stderr).contains("no active device"));
}
