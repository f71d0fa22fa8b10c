//! Benchmark history: one SQLite file per repository (`bench.db` in its state folder), rows
//! keyed by benchmark name, commit, branch and machine fingerprint, raw samples kept (the gate
//! reads samples, never pre-aggregated means).
//!
//! SQLite here, unlike the run records: history is queried across many runs by name, branch
//! and fingerprint (baselines, charts), and only `pipe bench` and jobs that declare benchmark
//! reports pay the milliseconds it costs to open.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::fingerprint::Fingerprint;
use super::ingest::BenchSeries;

/// A history error.
#[derive(Debug, thiserror::Error)]
#[error("bench history `{}`: {message}", path.display())]
pub struct HistoryError {
    /// The database.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// One recorded benchmark result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Row id.
    pub id: i64,
    /// Benchmark name.
    pub name: String,
    /// Commit SHA.
    pub commit: String,
    /// Branch (empty when detached).
    pub branch: String,
    /// Machine fingerprint id.
    pub fingerprint: String,
    /// Unix seconds.
    pub recorded_at: i64,
    /// Producing tool.
    pub source: String,
    /// The pipe run that recorded it, if any.
    pub run: Option<u64>,
    /// Samples in seconds.
    pub samples: Vec<f64>,
    /// Median of the samples.
    pub median: f64,
}

/// Where a result came from.
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    /// Commit SHA.
    pub commit: String,
    /// Branch.
    pub branch: String,
    /// The run number.
    pub run: Option<u64>,
}

/// The history database.
pub struct History {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS fingerprints (id TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  commit_sha TEXT NOT NULL,
  branch TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  recorded_at INTEGER NOT NULL,
  source TEXT NOT NULL,
  run INTEGER,
  samples TEXT NOT NULL,
  median REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS results_name ON results (name, fingerprint, recorded_at);
CREATE INDEX IF NOT EXISTS results_commit ON results (commit_sha);
";

/// The history file of a repository state folder.
pub fn path_in(repo_state_dir: &Path) -> PathBuf {
    repo_state_dir.join("bench.db")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl History {
    /// Opens (creating) the database.
    pub fn open(path: &Path) -> Result<History, HistoryError> {
        let e = |m: String| HistoryError {
            path: path.to_path_buf(),
            message: m,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|x| e(x.to_string()))?;
        }
        let conn = Connection::open(path).map_err(|x| e(x.to_string()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|x| e(x.to_string()))?;
        conn.execute_batch(SCHEMA).map_err(|x| e(x.to_string()))?;
        Ok(History {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> HistoryError {
        HistoryError {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Records results; returns their row ids.
    pub fn record(
        &mut self,
        series: &[BenchSeries],
        fp: &Fingerprint,
        prov: &Provenance,
    ) -> Result<Vec<i64>, HistoryError> {
        let tx = self.conn.transaction().map_err(|e| HistoryError {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let fpj = serde_json::to_string(fp).unwrap_or_default();
        let mut ids = Vec::new();
        {
            let e = |x: rusqlite::Error| HistoryError {
                path: self.path.clone(),
                message: x.to_string(),
            };
            tx.execute(
                "INSERT OR IGNORE INTO fingerprints (id, json) VALUES (?1, ?2)",
                params![fp.id, fpj],
            )
            .map_err(e)?;
            let t = now();
            for s in series {
                let samples = serde_json::to_string(&s.samples).unwrap_or_else(|_| "[]".into());
                tx.execute(
                    "INSERT INTO results (name, commit_sha, branch, fingerprint, recorded_at, source, run, samples, median)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        s.name,
                        prov.commit,
                        prov.branch,
                        fp.id,
                        t,
                        s.source,
                        prov.run.map(|r| r as i64),
                        samples,
                        super::stats::median(&s.samples),
                    ],
                )
                .map_err(e)?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(ids)
    }

    fn rows(&self, sql: &str, p: &[&dyn rusqlite::ToSql]) -> Result<Vec<Record>, HistoryError> {
        let mut st = self.conn.prepare(sql).map_err(|e| self.err(e))?;
        let rows = st
            .query_map(p, |r| {
                let samples: String = r.get(8)?;
                Ok(Record {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    commit: r.get(2)?,
                    branch: r.get(3)?,
                    fingerprint: r.get(4)?,
                    recorded_at: r.get(5)?,
                    source: r.get(6)?,
                    run: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
                    samples: serde_json::from_str(&samples).unwrap_or_default(),
                    median: r.get(9)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Every record of a benchmark, oldest first (optionally one machine only).
    pub fn series(
        &self,
        name: &str,
        fingerprint: Option<&str>,
    ) -> Result<Vec<Record>, HistoryError> {
        const COLS: &str = "SELECT id, name, commit_sha, branch, fingerprint, recorded_at, source, run, samples, median FROM results";
        match fingerprint {
            Some(f) => self.rows(
                &format!("{COLS} WHERE name = ?1 AND fingerprint = ?2 ORDER BY recorded_at, id"),
                &[&name, &f],
            ),
            None => self.rows(
                &format!("{COLS} WHERE name = ?1 ORDER BY recorded_at, id"),
                &[&name],
            ),
        }
    }

    /// The newest record per benchmark matching a reference: a commit SHA (or prefix of at
    /// least 7 hex digits), else a branch name. `exclude_commit` skips results of that commit.
    pub fn latest_for_ref(
        &self,
        reference: Option<&str>,
        exclude_commit: Option<&str>,
    ) -> Result<Vec<Record>, HistoryError> {
        const COLS: &str = "SELECT id, name, commit_sha, branch, fingerprint, recorded_at, source, run, samples, median FROM results";
        let ex = exclude_commit.unwrap_or("");
        let all = match reference {
            Some(r) if r.len() >= 7 && r.chars().all(|c| c.is_ascii_hexdigit()) => {
                let by_commit = self.rows(
                    &format!("{COLS} WHERE commit_sha LIKE ?1 || '%' AND commit_sha != ?2 ORDER BY recorded_at DESC, id DESC"),
                    &[&r, &ex],
                )?;
                if by_commit.is_empty() {
                    self.rows(
                        &format!("{COLS} WHERE branch = ?1 AND commit_sha != ?2 ORDER BY recorded_at DESC, id DESC"),
                        &[&r, &ex],
                    )?
                } else {
                    by_commit
                }
            }
            Some(r) => self.rows(
                &format!("{COLS} WHERE branch = ?1 AND commit_sha != ?2 ORDER BY recorded_at DESC, id DESC"),
                &[&r, &ex],
            )?,
            None => self.rows(
                &format!("{COLS} WHERE commit_sha != ?1 ORDER BY recorded_at DESC, id DESC"),
                &[&ex],
            )?,
        };
        // Newest per name, and only from the newest commit among them (one baseline build).
        let Some(commit) = all.first().map(|r| r.commit.clone()) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<Record> = Vec::new();
        for r in all.into_iter().filter(|r| r.commit == commit) {
            if !out.iter().any(|o| o.name == r.name) {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The newest record per benchmark of one commit.
    pub fn latest_for_commit(&self, commit: &str) -> Result<Vec<Record>, HistoryError> {
        const COLS: &str = "SELECT id, name, commit_sha, branch, fingerprint, recorded_at, source, run, samples, median FROM results";
        let all = self.rows(
            &format!("{COLS} WHERE commit_sha = ?1 ORDER BY recorded_at DESC, id DESC"),
            &[&commit],
        )?;
        let mut out: Vec<Record> = Vec::new();
        for r in all {
            if !out.iter().any(|o| o.name == r.name) {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// A stored fingerprint.
    pub fn fingerprint(&self, id: &str) -> Result<Option<Fingerprint>, HistoryError> {
        let j: Option<String> = self
            .conn
            .query_row("SELECT json FROM fingerprints WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(j.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Every benchmark name.
    pub fn names(&self) -> Result<Vec<String>, HistoryError> {
        let mut st = self
            .conn
            .prepare("SELECT DISTINCT name FROM results ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows = st.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<String>, _>>()
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, v: &[f64]) -> BenchSeries {
        BenchSeries {
            name: name.into(),
            samples: v.to_vec(),
            source: "test".into(),
            aggregate: false,
        }
    }

    #[test]
    fn records_and_finds_baselines() {
        let d = tempfile::tempdir().expect("tmp");
        let mut h = History::open(&path_in(d.path())).expect("open");
        let fp = Fingerprint::new("c".into(), 2, "x".into(), "l".into(), "k".into(), None);
        let main = |c: &str| Provenance {
            commit: c.into(),
            branch: "main".into(),
            run: Some(1),
        };
        h.record(
            &[s("a", &[1.0, 2.0, 3.0]), s("b", &[5.0])],
            &fp,
            &main("aaaaaaa1"),
        )
        .expect("rec");
        h.record(&[s("a", &[2.0, 3.0, 4.0])], &fp, &main("bbbbbbb2"))
            .expect("rec");
        let base = h.latest_for_ref(Some("main"), Some("bbbbbbb2")).expect("q");
        assert_eq!(base.len(), 2);
        assert_eq!(base[0].commit, "aaaaaaa1");
        assert_eq!(base[0].median, 2.0);
        let by_sha = h.latest_for_ref(Some("bbbbbbb"), None).expect("q");
        assert_eq!(by_sha.len(), 1);
        assert_eq!(by_sha[0].samples, vec![2.0, 3.0, 4.0]);
        assert_eq!(h.series("a", Some(&fp.id)).expect("q").len(), 2);
        assert_eq!(h.names().expect("names"), vec!["a", "b"]);
        assert_eq!(h.fingerprint(&fp.id).expect("fp"), Some(fp));
        assert!(h.latest_for_ref(Some("nope"), None).expect("q").is_empty());
    }
}
