//! `pipe server gc` from the command line against a real PostgreSQL (the collection rules
//! themselves are tested in server/tests/gc.rs).

use std::process::Command;
use std::time::{Duration, SystemTime};

use pipe_server::testing::PgCluster;

fn pipe(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("PIPE_DATABASE_URL")
        .env_remove("PIPE_SERVER_DATA")
        .output()
        .expect("run pipe");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn server_gc_removes_stray_blobs_and_reports_as_json() {
    let (code, _, err) = pipe(&["server", "gc"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no database given"), "{err}");

    let Some(cluster) = PgCluster::shared() else {
        eprintln!("skipping: PostgreSQL is not installed");
        return;
    };
    let url = cluster.fresh_db();
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let stray = data.join("blobs/sha256/ee").join("e".repeat(64));
    std::fs::create_dir_all(stray.parent().expect("parent")).expect("mkdir");
    std::fs::write(&stray, "left by a killed server").expect("write");
    let fresh = data.join("blobs/sha256/dd").join("d".repeat(64));
    std::fs::create_dir_all(fresh.parent().expect("parent")).expect("mkdir");
    std::fs::write(&fresh, "being uploaded").expect("write");
    std::fs::File::options()
        .write(true)
        .open(&stray)
        .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(7200)))
        .expect("age");
    let data_arg = data.display().to_string();
    let args = [
        "server",
        "gc",
        "--database",
        url.as_str(),
        "--data-dir",
        data_arg.as_str(),
        "--json",
    ];
    let (code, out, err) = pipe(&args);
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json report");
    assert_eq!(report["stray_files"], 1, "{out}");
    assert_eq!(report["artifacts"], 0, "{out}");
    assert!(!stray.exists(), "the old stray blob is removed");
    assert!(fresh.exists(), "a file within the grace period stays");
    // the text report goes to stderr
    let (code, out, err) = pipe(&args[..6]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("removed 0 expired artifact(s)"), "{err}");
}
