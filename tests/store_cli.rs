//! `vigil migrate`, `vigil user ...` and `vigil store` as an operator runs them, on SQLite and
//! the embedded bus: users created from the command line can read the history API with
//! their token, only for their assigned patients, and the service stops cleanly on SIGTERM.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{free_port, http_get, terminate, wait_status};

fn vigil(db_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.env("VIGIL__STORAGE__DATABASE_URL", db_url)
        .env_remove("VIGIL_CONFIG");
    cmd
}

fn run(db_url: &str, args: &[&str]) -> Output {
    vigil(db_url).args(args).output().expect("run vigil")
}

fn ok_stdout(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

#[test]
fn users_from_the_cli_read_the_history_api_of_vigil_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("v.db").display());

    let migrated = ok_stdout(run(&url, &["migrate"]));
    assert!(migrated.contains("schema up to date"), "{migrated}");
    // Migrating again is a no-op, not an error.
    ok_stdout(run(&url, &["migrate"]));

    let added = ok_stdout(run(
        &url,
        &["user", "add", "--username", "dr.a", "--patient", "pat-1"],
    ));
    assert_eq!(added.lines().count(), 1, "stdout is the password alone");
    assert!(added.trim().len() >= 20, "{added}");
    let twice = run(&url, &["user", "add", "--username", "dr.a"]);
    assert!(!twice.status.success());
    let bad_role = run(
        &url,
        &["user", "add", "--username", "dr.b", "--role", "surgeon"],
    );
    assert!(!bad_role.status.success());
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("surgeon"));

    // A password given on stdin must meet the policy.
    let mut short = vigil(&url)
        .args(["user", "add", "--username", "dr.c", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(&mut short.stdin.take().expect("stdin"), b"short\n").expect("write");
    let short = short.wait_with_output().expect("wait");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("password"));

    let assigned = ok_stdout(run(
        &url,
        &["user", "assign", "--username", "dr.a", "--patient", "pat-2"],
    ));
    assert!(assigned.contains("pat-1, pat-2"), "{assigned}");
    let unknown = run(&url, &["user", "token", "--username", "nobody"]);
    assert!(!unknown.status.success());
    let token = ok_stdout(run(&url, &["user", "token", "--username", "dr.a"]));
    let token = token.trim();

    let addr = format!("127.0.0.1:{}", free_port());
    let mut store = vigil(&url)
        .arg("store")
        .env("VIGIL__STORAGE__LISTEN", &addr)
        .env("VIGIL__BUS__URL", "memory://store-cli")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn vigil store");
    let ready = wait_status(&addr, "/readyz", 200, Duration::from_secs(60));
    assert!(
        ready.contains("\"database\"") && ready.contains("\"bus\""),
        "{ready}"
    );

    let (status, body) = http_get(&addr, "/v1/patients/pat-2/hr", Some(token));
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(&addr, "/v1/patients/pat-3/hr", Some(token));
    assert_eq!(status, 403, "not assigned: {body}");
    let (status, _) = http_get(&addr, "/v1/patients/pat-2/hr", None);
    assert_eq!(status, 401);

    let revoked = ok_stdout(run(&url, &["user", "revoke-tokens", "--username", "dr.a"]));
    assert!(revoked.contains("revoked 1"), "{revoked}");
    let (status, _) = http_get(&addr, "/v1/patients/pat-2/hr", Some(token));
    assert_eq!(status, 401, "a revoked token is refused at once");

    let status = terminate(&mut store, Duration::from_secs(30));
    assert!(status.success(), "clean exit after SIGTERM: {status}");
}
