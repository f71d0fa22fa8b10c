//! Retention and blob collection against a real PostgreSQL and a real blob folder (skips
//! without PostgreSQL unless `CI=true`).

use std::path::Path;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use pipe_server::api::SubmitRequest;
use pipe_server::blobs::BlobStore;
use pipe_server::db::Db;
use pipe_server::gc::{Policy, Report, collect};
use pipe_server::plan::plan_jobs;
use pipe_server::testing::PgCluster;

async fn db() -> Option<Db> {
    let cluster = PgCluster::shared()?;
    let db = Db::connect(&cluster.fresh_db(), 4).expect("pool");
    db.migrate().await.expect("migrate");
    Some(db)
}

async fn put(db: &Db, store: &BlobStore, content: &str) -> String {
    let (digest, size) = store
        .put(Body::from(content.to_owned()), None)
        .await
        .expect("put");
    db.add_blob(&digest, size).await.expect("add blob");
    digest
}

/// Makes a blob look stored two hours ago (row and file).
async fn age_blob(db: &Db, store: &BlobStore, digest: &str) {
    let c = db.client().await.expect("client");
    c.execute(
        "UPDATE blobs SET created_at = now() - interval '2 hours' WHERE digest = $1",
        &[&digest],
    )
    .await
    .expect("age row");
    age_file(&store.path(digest));
}

fn age_file(path: &Path) {
    let old = SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(old))
        .expect("age file");
}

/// An artifact of `run` holding `digest`, uploaded `days` ago, naming `retention` (JSON).
async fn artifact(db: &Db, run: i64, name: &str, digest: &str, days: i32, retention: &str) {
    let c = db.client().await.expect("client");
    let info: serde_json::Value = serde_json::from_str(&format!(
        r#"{{"name":"{name}","retention_days":{retention}}}"#
    ))
    .expect("info");
    let id: i64 = c
        .query_one(
            "INSERT INTO artifacts (run_id, name, job_id, attempt, info, created_at)
             SELECT $1, $2, id, 1, $3, now() - make_interval(days => $4)
               FROM jobs WHERE run_id = $1 LIMIT 1
             RETURNING id",
            &[&run, &name, &tokio_postgres::types::Json(&info), &days],
        )
        .await
        .expect("artifact")
        .get(0);
    c.execute(
        "INSERT INTO artifact_files (artifact_id, path, digest, size, mode)
         VALUES ($1, 'f.txt', $2, 1, 420)",
        &[&id, &digest],
    )
    .await
    .expect("artifact file");
}

async fn names(db: &Db, sql: &str) -> Vec<String> {
    let c = db.client().await.expect("client");
    let mut v: Vec<String> = c
        .query(sql, &[])
        .await
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn retention_expires_artifacts_and_cache_entries_and_blobs_follow() {
    let Some(db) = db().await else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let store = BlobStore::new(&dir.path().join("blobs"));
    let wf = "on: push\njobs:\n  a: {runs-on: ubuntu-latest, steps: [{run: 'true'}]}\n";
    let jobs = plan_jobs("ci.yml", wf).expect("plan");
    let req = SubmitRequest {
        workflow_path: ".github/workflows/ci.yml".into(),
        workflow: wf.into(),
        ..SubmitRequest::default()
    };
    let (run, _) = db.submit(&req, &jobs, None).await.expect("submit");

    // artifacts: expired by their own retention, kept by the default, capped by the maximum
    let short = put(&db, &store, "short-lived").await;
    let kept = put(&db, &store, "kept by the default").await;
    let capped = put(&db, &store, "asked for too long").await;
    let shared = put(&db, &store, "in an expired and a live artifact").await;
    artifact(&db, run, "short", &short, 2, "1").await;
    artifact(&db, run, "short-shared", &shared, 2, "1").await;
    artifact(&db, run, "default", &kept, 30, "0").await;
    artifact(&db, run, "default-shared", &shared, 30, "null").await;
    artifact(&db, run, "capped", &capped, 100, "500").await;

    // cache: an old entry goes with its manifest and the blob only it names; a fresh one
    // keeps the `/cas/` blob its manifest names although no row refers to it
    let old_cas = put(&db, &store, "old output").await;
    let old_text = format!("pipe-entry v1 x\n{{\"files\":[{{\"digest\":\"sha256:{old_cas}\"}}]}}");
    let old_manifest = put(&db, &store, &old_text).await;
    let live_cas = put(&db, &store, "live output").await;
    let live_manifest = put(
        &db,
        &store,
        &format!("pipe-entry v1 x\n{{\"files\":[{{\"digest\":\"sha256:{live_cas}\"}}]}}"),
    )
    .await;
    db.cache_ac_put("repo", &"1".repeat(64), &old_manifest)
        .await
        .expect("ac");
    db.cache_ac_put("repo", &"2".repeat(64), &live_manifest)
        .await
        .expect("ac");
    // an entry last written 8 days ago but read now stays
    let read_manifest = put(&db, &store, "pipe-entry v1 x\n{}").await;
    db.cache_ac_put("repo", &"3".repeat(64), &read_manifest)
        .await
        .expect("ac");
    let c = db.client().await.expect("client");
    c.execute(
        "UPDATE cache_ac SET updated_at = now() - interval '8 days' WHERE digest <> $1",
        &[&"2".repeat(64)],
    )
    .await
    .expect("age cache");
    assert_eq!(
        db.cache_ac_get("repo", &"3".repeat(64))
            .await
            .expect("get")
            .as_deref(),
        Some(read_manifest.as_str())
    );

    // an unreferenced blob within the grace period stays; old ones go
    let fresh_orphan = put(&db, &store, "uploaded a moment ago").await;
    for d in [
        &short,
        &kept,
        &capped,
        &shared,
        &old_cas,
        &old_manifest,
        &live_cas,
        &live_manifest,
        &read_manifest,
    ] {
        age_blob(&db, &store, d).await;
    }
    // a file with no row (a server killed between writing and recording), an old and a
    // fresh upload temp file
    let stray = "e".repeat(64);
    let stray_path = store.path(&stray);
    std::fs::create_dir_all(stray_path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&stray_path, "stray").expect("stray");
    age_file(&stray_path);
    let tmp = dir.path().join("blobs/tmp");
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    std::fs::write(tmp.join("upload-old"), "x").expect("old tmp");
    age_file(&tmp.join("upload-old"));
    std::fs::write(tmp.join("upload-new"), "x").expect("new tmp");

    let report = collect(&db, &store, &Policy::default())
        .await
        .expect("collect");
    assert_eq!(
        report,
        Report {
            artifacts: 3,
            cache_entries: 1,
            blobs: 4,
            bytes: ("short-lived".len()
                + "asked for too long".len()
                + "old output".len()
                + old_text.len()) as u64,
            stray_files: 2,
        },
        "{report}"
    );
    assert_eq!(
        names(&db, "SELECT name FROM artifacts").await,
        vec!["default".to_owned(), "default-shared".to_owned()]
    );
    for gone in [&short, &capped, &old_cas, &old_manifest] {
        assert!(!store.path(gone).exists(), "{gone} should be gone");
    }
    for stays in [
        &kept,
        &shared,
        &live_cas,
        &live_manifest,
        &read_manifest,
        &fresh_orphan,
    ] {
        assert!(store.path(stays).exists(), "{stays} should stay");
    }
    assert!(!stray_path.exists());
    assert!(!tmp.join("upload-old").exists());
    assert!(tmp.join("upload-new").exists());

    // a second collection finds nothing more
    let again = collect(&db, &store, &Policy::default())
        .await
        .expect("collect again");
    assert_eq!(again, Report::default());
}

#[tokio::test]
async fn storing_a_blob_again_protects_it_from_a_collection() {
    let Some(db) = db().await else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let store = BlobStore::new(&dir.path().join("blobs"));
    let d = put(&db, &store, "deduplicated").await;
    age_blob(&db, &store, &d).await;
    // a deduplicated upload of the same content refreshes the row and the file
    let again = put(&db, &store, "deduplicated").await;
    assert_eq!(again, d);
    let report = collect(&db, &store, &Policy::default())
        .await
        .expect("collect");
    assert_eq!(report.blobs, 0, "{report}");
    assert!(store.path(&d).exists());
    // once it is old again and still unreferenced, it goes
    age_blob(&db, &store, &d).await;
    let report = collect(&db, &store, &Policy::default())
        .await
        .expect("collect");
    assert_eq!(report.blobs, 1, "{report}");
    assert!(!store.path(&d).exists());
}
