//! Where ledger entries are kept: the [`LedgerStore`] trait and its SQLite implementation.
//!
//! A store knows nothing about hashes or signatures: it keeps `(seq, hash, text)` rows and a
//! signed head, and appends only when the caller's expected head is still the head
//! (compare-and-swap), so two writers can never fork the chain. The PostgreSQL store of the
//! server issue implements the same trait.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// The last entry of a ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// Its position.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

/// A row to append: the entry's position, hash, the columns queries filter on, and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRow {
    /// Position and hash.
    pub head: Head,
    /// The entry's kind.
    pub kind: String,
    /// Its environment.
    pub env: Option<String>,
    /// Its build.
    pub build: Option<String>,
    /// The canonical JSON.
    pub text: String,
}

/// Which rows a query wants (every field that is set must match; kinds match any listed).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Kinds (empty = any).
    pub kinds: Vec<String>,
    /// Environment.
    pub env: Option<String>,
    /// Build.
    pub build: Option<String>,
}

/// A stored row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Position as stored.
    pub seq: u64,
    /// The entry's canonical JSON.
    pub text: String,
}

/// What a store keeps about its head besides the last row: a signature over
/// `"<seq> <hash>"` by the ledger key, so that removing the last entries is detected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHead {
    /// The head.
    pub head: Head,
    /// The signature (JSON of a [`super::entry::Sig`]).
    pub sig: String,
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone appended first: the head is not the one expected.
    #[error("the ledger head moved (now at #{})", .0.as_ref().map_or(-1, |h| h.seq as i64))]
    Conflict(Option<Head>),
    /// The database failed.
    #[error("ledger database `{path}`: {message}")]
    Db {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// Storage of ledger rows. Implementations must make `append` atomic and conditional on
/// `expected` being the current head (`None` = the ledger is empty).
pub trait LedgerStore: Send + Sync {
    /// The current head, if any entry exists.
    fn head(&self) -> Result<Option<Head>, StoreError>;
    /// The signed head, if one was stored.
    fn signed_head(&self) -> Result<Option<SignedHead>, StoreError>;
    /// Appends rows (consecutive, the first following `expected`) and sets the signed head,
    /// atomically; fails with [`StoreError::Conflict`] when `expected` is not the head.
    fn append(
        &self,
        expected: Option<&Head>,
        rows: &[NewRow],
        head_sig: &str,
    ) -> Result<Head, StoreError>;
    /// The rows matching `filter`, by `seq`.
    fn select(&self, filter: &Filter) -> Result<Vec<Row>, StoreError>;
    /// Calls `f` for each row with `from <= seq`, in stored order (by `seq`), until it
    /// returns false.
    fn scan(&self, from: u64, f: &mut dyn FnMut(Row) -> bool) -> Result<(), StoreError>;
    /// One row.
    fn get(&self, seq: u64) -> Result<Option<Row>, StoreError>;
}

/// The SQLite store (`ledger.db` in the repository's state folder).
pub struct SqliteStore {
    conn: std::sync::Mutex<Connection>,
    path: String,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    seq  INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    env  TEXT,
    build TEXT,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_build ON entries (build);
CREATE INDEX IF NOT EXISTS entries_env ON entries (env, kind);
CREATE TABLE IF NOT EXISTS head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL,
    sig  TEXT NOT NULL
);
";

/// A row's text; bytes that are not UTF-8 (a damaged row) are replaced, which verification
/// then reports as an altered entry.
fn text_of(v: rusqlite::types::ValueRef<'_>) -> String {
    match v {
        rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => {
            String::from_utf8_lossy(b).into_owned()
        }
        _ => String::new(),
    }
}

impl SqliteStore {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let p = path.display().to_string();
        let db = |e: rusqlite::Error| StoreError::Db {
            path: p.clone(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Db {
                path: p.clone(),
                message: e.to_string(),
            })?;
        }
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(db)?;
        // Switching to WAL and creating the schema take an exclusive lock, and SQLite
        // answers SQLITE_BUSY at once (without calling the busy handler) when two
        // processes open a fresh ledger together; retry those for the busy timeout.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut pause = Duration::from_millis(2);
        loop {
            let setup = conn
                .pragma_update(None, "journal_mode", "WAL")
                .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
                .and_then(|()| conn.execute_batch(SCHEMA));
            match setup {
                Ok(()) => break,
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(e) => return Err(db(e)),
            }
        }
        Ok(SqliteStore {
            conn: std::sync::Mutex::new(conn),
            path: p,
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |e| StoreError::Db {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn head_of(conn: &Connection) -> rusqlite::Result<Option<Head>> {
        conn.query_row(
            "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1",
            [],
            |r| {
                Ok(Head {
                    seq: r.get::<_, i64>(0)? as u64,
                    hash: r.get(1)?,
                })
            },
        )
        .optional()
    }

    /// Runs raw SQL (tests use it to tamper with the database as an attacker would).
    pub fn execute_raw(&self, sql: &str) -> Result<(), StoreError> {
        self.lock().execute_batch(sql).map_err(self.err())
    }
}

impl LedgerStore for SqliteStore {
    fn head(&self) -> Result<Option<Head>, StoreError> {
        Self::head_of(&self.lock()).map_err(self.err())
    }

    fn signed_head(&self) -> Result<Option<SignedHead>, StoreError> {
        self.lock()
            .query_row("SELECT seq, hash, sig FROM head WHERE id = 1", [], |r| {
                Ok(SignedHead {
                    head: Head {
                        seq: r.get::<_, i64>(0)? as u64,
                        hash: r.get(1)?,
                    },
                    sig: r.get(2)?,
                })
            })
            .optional()
            .map_err(self.err())
    }

    fn append(
        &self,
        expected: Option<&Head>,
        rows: &[NewRow],
        head_sig: &str,
    ) -> Result<Head, StoreError> {
        let mut conn = self.lock();
        let err = self.err();
        // IMMEDIATE takes the write lock first, so the head read below cannot go stale.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let current = Self::head_of(&tx).map_err(&err)?;
        if current.as_ref() != expected {
            return Err(StoreError::Conflict(current));
        }
        let mut last = current;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO entries (seq, hash, kind, env, build, text)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(&err)?;
            for r in rows {
                ins.execute(params![
                    r.head.seq as i64,
                    r.head.hash,
                    r.kind,
                    r.env,
                    r.build,
                    r.text
                ])
                .map_err(&err)?;
                last = Some(r.head.clone());
            }
        }
        let Some(last) = last else {
            return Err(StoreError::Db {
                path: self.path.clone(),
                message: "nothing to append".into(),
            });
        };
        tx.execute(
            "INSERT INTO head (id, seq, hash, sig) VALUES (1, ?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, sig = excluded.sig",
            params![last.seq as i64, last.hash, head_sig],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(last)
    }

    fn scan(&self, from: u64, f: &mut dyn FnMut(Row) -> bool) -> Result<(), StoreError> {
        let conn = self.lock();
        let err = self.err();
        let mut stmt = conn
            .prepare_cached("SELECT seq, text FROM entries WHERE seq >= ?1 ORDER BY seq")
            .map_err(&err)?;
        let mut rows = stmt.query(params![from as i64]).map_err(&err)?;
        while let Some(r) = rows.next().map_err(&err)? {
            let row = Row {
                seq: r.get::<_, i64>(0).map_err(&err)? as u64,
                text: text_of(r.get_ref(1).map_err(&err)?),
            };
            if !f(row) {
                break;
            }
        }
        Ok(())
    }

    fn select(&self, filter: &Filter) -> Result<Vec<Row>, StoreError> {
        let conn = self.lock();
        let err = self.err();
        let mut sql = String::from("SELECT seq, text FROM entries WHERE 1 = 1");
        let mut args: Vec<String> = Vec::new();
        if let Some(env) = &filter.env {
            args.push(env.clone());
            sql.push_str(&format!(" AND env = ?{}", args.len()));
        }
        if let Some(build) = &filter.build {
            args.push(build.clone());
            sql.push_str(&format!(" AND build = ?{}", args.len()));
        }
        if !filter.kinds.is_empty() {
            let mut marks = Vec::new();
            for k in &filter.kinds {
                args.push(k.clone());
                marks.push(format!("?{}", args.len()));
            }
            sql.push_str(&format!(" AND kind IN ({})", marks.join(", ")));
        }
        sql.push_str(" ORDER BY seq");
        let mut stmt = conn.prepare_cached(&sql).map_err(&err)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok(Row {
                    seq: r.get::<_, i64>(0)? as u64,
                    text: text_of(r.get_ref(1)?),
                })
            })
            .map_err(&err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&err)
    }

    fn get(&self, seq: u64) -> Result<Option<Row>, StoreError> {
        self.lock()
            .query_row(
                "SELECT seq, text FROM entries WHERE seq = ?1",
                params![seq as i64],
                |r| {
                    Ok(Row {
                        seq: r.get::<_, i64>(0)? as u64,
                        text: text_of(r.get_ref(1)?),
                    })
                },
            )
            .optional()
            .map_err(self.err())
    }
}

/// Whether SQLite refused for a lock another connection holds.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}
