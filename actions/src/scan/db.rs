//! The local advisory database: OSV records imported once into one SQLite file, indexed by
//! (ecosystem, package name), so a scan opens it in about a millisecond and reads only the
//! rows of the packages it has instead of parsing thousands of JSON files.
//!
//! Layout (`pipe.scan.db/v2`), in `DIR/osv.db` where DIR is `--db` or
//! `$PIPE_CACHE_DIR/scan-db` by default:
//!
//! - `meta(key, value)`: `schema`, `digest` (SHA-256 of the content in a canonical order, so
//!   the same advisories give the same digest whatever the import order or file layout),
//!   `records`, `withdrawn`, `newest_modified`, `imported_at`, `sources`.
//! - `affected(ecosystem, name, id, seq, record, entry)`: one row per affected package,
//!   clustered by that key so a lookup reads adjacent rows; the name is normalized for its
//!   ecosystem (PEP 503 for PyPI); `record` is the shared part of the advisory (aliases,
//!   summary, rated severity) and `entry` the package's ranges, both compact JSON;
//!   withdrawn records have no rows.
//! - `ecosystem(name, records, withdrawn)`: counts for `db status`.
//!
//! The database is rebuilt whole on every import into a temporary file that is renamed into
//! place, so a scan running at the same time sees the old or the new database, never half.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, params};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::Warning;
use super::osv::{Advisory, AffectedEntry, Record};
use super::time;

/// The database schema version.
pub const SCHEMA: &str = "pipe.scan.db/v2";
/// The database file name inside the database directory.
pub const FILE_NAME: &str = "osv.db";

/// Errors opening or building the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No database at the path.
    #[error("no advisory database at `{0}`")]
    Missing(PathBuf),
    /// The file is not a database of ours, or is damaged.
    #[error("advisory database `{path}` is unusable: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An import source could not be read.
    #[error("cannot read `{path}`: {reason}")]
    Source {
        /// The source.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Writing the database failed.
    #[error("cannot write the advisory database `{path}`: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The database file inside a database directory; a path that names a file is used as is.
pub fn file_in(dir: &Path) -> PathBuf {
    if dir.extension().is_some_and(|e| e == "db") {
        dir.to_path_buf()
    } else {
        dir.join(FILE_NAME)
    }
}

/// The default database directory: `$PIPE_CACHE_DIR/scan-db`.
pub fn default_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    pipe_runner::dirs::cache_root(env)
        .ok()
        .map(|c| c.join("scan-db"))
}

/// Normalizes a package name the way its ecosystem compares names.
pub fn normalize_name(ecosystem: &str, name: &str) -> String {
    if ecosystem == "PyPI" {
        // PEP 503: lowercase, runs of `-`, `_`, `.` become one `-`.
        let mut out = String::with_capacity(name.len());
        let mut sep = false;
        for c in name.trim().chars() {
            if matches!(c, '-' | '_' | '.') {
                sep = true;
            } else {
                if sep && !out.is_empty() {
                    out.push('-');
                }
                sep = false;
                out.push(c.to_ascii_lowercase());
            }
        }
        out
    } else {
        name.trim().to_owned()
    }
}

/// Facts about a database, for `db status` and the report.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Status {
    /// The schema version.
    pub schema: String,
    /// Content digest, `sha256:…`.
    pub digest: String,
    /// Records imported (withdrawn ones included).
    pub records: u64,
    /// Withdrawn records (never matched).
    pub withdrawn: u64,
    /// The newest `modified` of any record.
    pub newest_modified: Option<String>,
    /// Records per ecosystem.
    pub ecosystems: BTreeMap<String, EcosystemCount>,
    /// When the import ran.
    pub imported_at: String,
    /// What was imported.
    pub sources: Vec<String>,
}

/// Counts of one ecosystem.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EcosystemCount {
    /// Records with an affected package in the ecosystem.
    pub records: u64,
    /// Of these, withdrawn.
    pub withdrawn: u64,
}

/// An open database.
pub struct Db {
    conn: Connection,
    /// Its facts.
    pub status: Status,
    /// The file.
    pub path: PathBuf,
}

/// One affected entry of one advisory, as looked up for a package.
#[derive(Clone, Debug)]
pub struct Hit {
    /// The advisory.
    pub advisory: Advisory,
    /// The entry.
    pub entry: AffectedEntry,
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

impl Db {
    /// Opens the database file read-only.
    pub fn open(file: &Path) -> Result<Db, DbError> {
        if !file.is_file() {
            return Err(DbError::Missing(file.to_path_buf()));
        }
        let conn = Connection::open_with_flags(
            file,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| corrupt(file, e))?;
        // One read transaction for the connection's life: a scan then takes the file lock
        // once instead of once per package lookup (the import replaces the file by rename,
        // so the open file never changes under us), and reads pages through mmap.
        conn.execute_batch("PRAGMA mmap_size = 268435456; BEGIN;")
            .map_err(|e| corrupt(file, e))?;
        // The bundled SQLite plans with STAT4, which re-prepares a statement whenever a bound
        // value changes; with the query planner stability guarantee the lookup statement is
        // prepared once (it was a quarter of a 500-package scan).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(|e| corrupt(file, e))?;
        let all: BTreeMap<String, String> = {
            let mut st = conn
                .prepare("SELECT key, value FROM meta")
                .map_err(|e| corrupt(file, e))?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(|e| corrupt(file, e))?;
            rows.collect::<Result<_, _>>()
                .map_err(|e| corrupt(file, e))?
        };
        let meta = |k: &str| -> Result<Option<String>, DbError> { Ok(all.get(k).cloned()) };
        let schema = meta("schema")?.unwrap_or_default();
        if schema != SCHEMA {
            return Err(corrupt(
                file,
                format!("format `{schema}` is not `{SCHEMA}`; import it again"),
            ));
        }
        let num = |k: &str| -> Result<u64, DbError> {
            Ok(meta(k)?.and_then(|v| v.parse().ok()).unwrap_or(0))
        };
        let mut ecosystems = BTreeMap::new();
        {
            let mut st = conn
                .prepare("SELECT name, records, withdrawn FROM ecosystem ORDER BY name")
                .map_err(|e| corrupt(file, e))?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        EcosystemCount {
                            records: r.get::<_, i64>(1)? as u64,
                            withdrawn: r.get::<_, i64>(2)? as u64,
                        },
                    ))
                })
                .map_err(|e| corrupt(file, e))?;
            for row in rows {
                let (k, v) = row.map_err(|e| corrupt(file, e))?;
                ecosystems.insert(k, v);
            }
        }
        let status = Status {
            schema,
            digest: meta("digest")?.unwrap_or_default(),
            records: num("records")?,
            withdrawn: num("withdrawn")?,
            newest_modified: meta("newest_modified")?.filter(|s| !s.is_empty()),
            ecosystems,
            imported_at: meta("imported_at")?.unwrap_or_default(),
            sources: meta("sources")?
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default(),
        };
        Ok(Db {
            conn,
            status,
            path: file.to_path_buf(),
        })
    }

    /// The affected entries of many packages of one ecosystem in one query (names are
    /// normalized here), keyed by normalized name. One statement for a whole lockfile instead
    /// of one per package: most packages have no advisory, and a round trip per package was
    /// most of a scan's time.
    pub fn lookup_many(
        &self,
        ecosystem: &str,
        names: &[&str],
    ) -> Result<HashMap<String, Vec<Hit>>, DbError> {
        let mut keys: Vec<String> = names.iter().map(|n| normalize_name(ecosystem, n)).collect();
        keys.sort();
        keys.dedup();
        let list = serde_json::to_string(&keys).map_err(|e| corrupt(&self.path, e))?;
        let mut st = self
            .conn
            .prepare_cached(
                // The table is clustered by (ecosystem, name, id, seq): the rows of one
                // package are adjacent, in advisory id order, one b-tree descent each.
                "SELECT name, record, entry FROM affected \
                 WHERE ecosystem = ?1 AND name IN (SELECT value FROM json_each(?2))",
            )
            .map_err(|e| corrupt(&self.path, e))?;
        let rows = st
            .query_map(params![ecosystem, list], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| corrupt(&self.path, e))?;
        let mut out: HashMap<String, Vec<Hit>> = HashMap::new();
        for row in rows {
            let (name, rec, entry) = row.map_err(|e| corrupt(&self.path, e))?;
            out.entry(name).or_default().push(Hit {
                advisory: serde_json::from_str(&rec).map_err(|e| corrupt(&self.path, e))?,
                entry: serde_json::from_str(&entry).map_err(|e| corrupt(&self.path, e))?,
            });
        }
        Ok(out)
    }

    /// Whether any advisory exists for the ecosystem (a scan warns about ecosystems it has
    /// packages for but no data).
    pub fn has_ecosystem(&self, ecosystem: &str) -> bool {
        self.status.ecosystems.contains_key(ecosystem)
    }
}

/// What an import did.
#[derive(Debug)]
pub struct ImportReport {
    /// The new database's facts.
    pub status: Status,
    /// Files that were skipped, and why.
    pub warnings: Vec<Warning>,
    /// The database file.
    pub path: PathBuf,
}

struct Imported {
    advisory: Advisory,
    modified: i64,
    withdrawn: bool,
    affected: Vec<(String, String, AffectedEntry)>,
    origin: String,
}

/// Imports OSV JSON from directories (searched recursively for `*.json`) and zip files (as
/// osv.dev's `all.zip`), replacing the database in `dir`.
pub fn import(sources: &[PathBuf], dir: &Path, now: i64) -> Result<ImportReport, DbError> {
    let mut records: BTreeMap<String, Imported> = BTreeMap::new();
    let mut warnings = Vec::new();
    for src in sources {
        let meta = std::fs::metadata(src).map_err(|e| DbError::Source {
            path: src.clone(),
            reason: super::io_reason(&e),
        })?;
        if meta.is_dir() {
            let mut files = Vec::new();
            collect_json(src, &mut files).map_err(|e| DbError::Source {
                path: src.clone(),
                reason: super::io_reason(&e),
            })?;
            files.sort();
            for f in files {
                let shown = f.display().to_string();
                match std::fs::read(&f) {
                    Ok(bytes) => add_record(&mut records, &mut warnings, &shown, &bytes),
                    Err(e) => warnings.push(Warning::at(
                        "advisory-unreadable",
                        &shown,
                        None,
                        format!("cannot read: {}", super::io_reason(&e)),
                    )),
                }
            }
        } else {
            read_zip(src, &mut records, &mut warnings)?;
        }
    }
    write(&records, sources, dir, now).map(|(status, path)| ImportReport {
        status,
        warnings,
        path,
    })
}

fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let p = entry.path();
        if ft.is_dir() {
            collect_json(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
    Ok(())
}

fn read_zip(
    src: &Path,
    records: &mut BTreeMap<String, Imported>,
    warnings: &mut Vec<Warning>,
) -> Result<(), DbError> {
    let bad = |reason: String| DbError::Source {
        path: src.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(src).map_err(|e| bad(super::io_reason(&e)))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| bad(format!("not a directory or a zip archive ({e})")))?;
    let mut names: Vec<(String, usize)> = (0..zip.len())
        .filter_map(|i| {
            let f = zip.by_index(i).ok()?;
            let name = f.name().to_owned();
            (f.is_file() && name.ends_with(".json")).then_some((name, i))
        })
        .collect();
    names.sort();
    for (name, i) in names {
        let shown = format!("{}!{name}", src.display());
        let mut bytes = Vec::new();
        let read = zip
            .by_index(i)
            .map_err(|e| e.to_string())
            .and_then(|mut f| f.read_to_end(&mut bytes).map_err(|e| e.to_string()));
        match read {
            Ok(_) => add_record(records, warnings, &shown, &bytes),
            Err(e) => warnings.push(Warning::at(
                "advisory-unreadable",
                &shown,
                None,
                format!("cannot read: {e}"),
            )),
        }
    }
    Ok(())
}

fn add_record(
    records: &mut BTreeMap<String, Imported>,
    warnings: &mut Vec<Warning>,
    shown: &str,
    bytes: &[u8],
) {
    let record: Record = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        Err(e) => {
            warnings.push(Warning::at(
                "advisory-invalid",
                shown,
                Some(e.line() as u32),
                format!("not an OSV record: {e}"),
            ));
            return;
        }
    };
    if record.id.trim().is_empty() {
        warnings.push(Warning::at(
            "advisory-invalid",
            shown,
            None,
            "the record has no `id`".into(),
        ));
        return;
    }
    let modified = record
        .modified
        .as_deref()
        .and_then(time::parse_rfc3339)
        .unwrap_or(i64::MIN);
    let mut affected: Vec<(String, String, AffectedEntry)> = record
        .affected
        .iter()
        .filter_map(|a| {
            let p = a.package.as_ref()?;
            let eco = p.ecosystem.trim().to_owned();
            let name = normalize_name(&eco, &p.name);
            Some((eco, name, a.entry()))
        })
        .collect();
    // Keep entries in file order but drop exact duplicates.
    let mut seen = Vec::new();
    affected.retain(|a| {
        let key = serde_json::to_string(&(&a.0, &a.1, &a.2)).unwrap_or_default();
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    let imported = Imported {
        advisory: record.advisory(),
        modified,
        withdrawn: record.withdrawn.is_some(),
        affected,
        origin: shown.to_owned(),
    };
    match records.get(&record.id) {
        Some(old) => {
            // The same id from two sources: the newer record wins, as osv.dev does.
            let keep_new = imported.modified > old.modified;
            warnings.push(Warning::at(
                "advisory-duplicate",
                shown,
                None,
                format!(
                    "`{}` is also in `{}`; keeping the {} copy",
                    record.id,
                    old.origin,
                    if keep_new { "newer (this)" } else { "first" }
                ),
            ));
            if keep_new {
                records.insert(record.id.clone(), imported);
            }
        }
        None => {
            records.insert(record.id.clone(), imported);
        }
    }
}

fn write(
    records: &BTreeMap<String, Imported>,
    sources: &[PathBuf],
    dir: &Path,
    now: i64,
) -> Result<(Status, PathBuf), DbError> {
    let target = file_in(dir);
    let werr = |e: &dyn std::fmt::Display| DbError::Write {
        path: target.clone(),
        reason: e.to_string(),
    };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| werr(&super::io_reason(&e)))?;
    }
    let tmp = target.with_extension(format!("db.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut conn = Connection::open(&tmp).map_err(|e| werr(&e))?;
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA page_size = 4096;
         CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
         CREATE TABLE affected (ecosystem TEXT NOT NULL, name TEXT NOT NULL, id TEXT NOT NULL,
                                seq INTEGER NOT NULL, record TEXT NOT NULL, entry TEXT NOT NULL,
                                PRIMARY KEY (ecosystem, name, id, seq)) WITHOUT ROWID;
         CREATE TABLE ecosystem (name TEXT PRIMARY KEY, records INTEGER NOT NULL,
                                 withdrawn INTEGER NOT NULL) WITHOUT ROWID;",
    )
    .map_err(|e| werr(&e))?;
    let mut hasher = Sha256::new();
    let mut ecosystems: BTreeMap<String, EcosystemCount> = BTreeMap::new();
    let mut newest: Option<i64> = None;
    let mut withdrawn = 0u64;
    {
        let tx = conn.transaction().map_err(|e| werr(&e))?;
        {
            let mut ins_aff = tx
                .prepare(
                    "INSERT INTO affected (ecosystem, name, id, seq, record, entry) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(|e| werr(&e))?;
            for (id, rec) in records {
                if rec.modified != i64::MIN {
                    newest = Some(newest.map_or(rec.modified, |n| n.max(rec.modified)));
                }
                let mut ecos: Vec<&str> = rec.affected.iter().map(|a| a.0.as_str()).collect();
                ecos.sort();
                ecos.dedup();
                for e in ecos {
                    let c = ecosystems.entry(e.to_owned()).or_insert(EcosystemCount {
                        records: 0,
                        withdrawn: 0,
                    });
                    c.records += 1;
                    c.withdrawn += u64::from(rec.withdrawn);
                }
                let json = serde_json::to_string(&rec.advisory).map_err(|e| werr(&e))?;
                hasher.update(format!("A\t{id}\t{}\t{json}\n", rec.withdrawn).as_bytes());
                if rec.withdrawn {
                    withdrawn += 1;
                    continue;
                }
                for (seq, (eco, name, entry)) in rec.affected.iter().enumerate() {
                    let ej = serde_json::to_string(entry).map_err(|e| werr(&e))?;
                    hasher.update(format!("P\t{eco}\t{name}\t{ej}\n").as_bytes());
                    ins_aff
                        .execute(params![eco, name, id, seq as i64, json, ej])
                        .map_err(|e| werr(&e))?;
                }
            }
            let mut ins_eco = tx
                .prepare("INSERT INTO ecosystem (name, records, withdrawn) VALUES (?1, ?2, ?3)")
                .map_err(|e| werr(&e))?;
            for (k, v) in &ecosystems {
                ins_eco
                    .execute(params![k, v.records as i64, v.withdrawn as i64])
                    .map_err(|e| werr(&e))?;
            }
        }
        let status = Status {
            schema: SCHEMA.into(),
            digest: format!("sha256:{}", hex::encode(hasher.finalize())),
            records: records.len() as u64,
            withdrawn,
            newest_modified: newest.map(time::format_rfc3339),
            ecosystems,
            imported_at: time::format_rfc3339(now),
            sources: sources.iter().map(|s| s.display().to_string()).collect(),
        };
        {
            let mut ins = tx
                .prepare("INSERT INTO meta (key, value) VALUES (?1, ?2)")
                .map_err(|e| werr(&e))?;
            let sources_json = serde_json::to_string(&status.sources).map_err(|e| werr(&e))?;
            for (k, v) in [
                ("schema", status.schema.clone()),
                ("digest", status.digest.clone()),
                ("records", status.records.to_string()),
                ("withdrawn", status.withdrawn.to_string()),
                (
                    "newest_modified",
                    status.newest_modified.clone().unwrap_or_default(),
                ),
                ("imported_at", status.imported_at.clone()),
                ("sources", sources_json),
            ] {
                ins.execute(params![k, v]).map_err(|e| werr(&e))?;
            }
        }
        tx.commit().map_err(|e| werr(&e))?;
        conn.execute_batch("VACUUM;").map_err(|e| werr(&e))?;
        drop(conn);
        std::fs::rename(&tmp, &target).map_err(|e| werr(&super::io_reason(&e)))?;
        Ok((status, target))
    }
}
