//! The PostgreSQL ledger store: the same rows and compare-and-swap append as the SQLite store,
//! in the server's database, so promotions run from several machines share one chain.
//!
//! Several ledgers share a database, one per repository (`ledger` names it). An append takes a
//! transaction-scoped advisory lock on the ledger's name, reads the head, compares it with the
//! caller's and inserts; the primary key `(ledger, seq)` would refuse a second row at the same
//! position even without the lock, so two writers can never fork the chain.
//!
//! The `postgres` client is blocking (it runs its own small runtime): call it from threads,
//! not from inside an async task.

use std::sync::Mutex;

use postgres::{Client, NoTls};

use super::store::{Filter, Head, LedgerStore, NewRow, Row, SignedHead, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger_entries (
    ledger text NOT NULL,
    seq    bigint NOT NULL,
    hash   text NOT NULL,
    kind   text NOT NULL,
    env    text,
    build  text,
    text   text NOT NULL,
    PRIMARY KEY (ledger, seq)
);
CREATE INDEX IF NOT EXISTS ledger_entries_build ON ledger_entries (ledger, build);
CREATE INDEX IF NOT EXISTS ledger_entries_env ON ledger_entries (ledger, env, kind);
CREATE TABLE IF NOT EXISTS ledger_heads (
    ledger text PRIMARY KEY,
    seq    bigint NOT NULL,
    hash   text NOT NULL,
    sig    text NOT NULL
);
";

/// A ledger in PostgreSQL.
pub struct PgStore {
    client: Mutex<Client>,
    ledger: String,
    url: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("ledger", &self.ledger)
            .finish()
    }
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

fn seq_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn seq_param(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Connects to `url` (`postgres://…` or `key=value …`) and creates the tables when they
    /// are missing; `ledger` names this repository's ledger in the database.
    pub fn connect(url: &str, ledger: &str) -> Result<PgStore, StoreError> {
        let shown = redact(url);
        let db = |e: postgres::Error| StoreError::Db {
            path: shown.clone(),
            message: e.to_string(),
        };
        let mut client = Client::connect(url, NoTls).map_err(db)?;
        // Two first appends at once may both create the tables: serialise that too.
        let mut tx = client.transaction().map_err(db)?;
        tx.execute("SELECT pg_advisory_xact_lock(7316002)", &[])
            .map_err(db)?;
        tx.batch_execute(SCHEMA).map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(PgStore {
            client: Mutex::new(client),
            ledger: ledger.to_owned(),
            url: shown,
        })
    }

    fn err(&self) -> impl Fn(postgres::Error) -> StoreError + '_ {
        |e| StoreError::Db {
            path: self.url.clone(),
            message: e.to_string(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Client> {
        self.client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn head_of(
        c: &mut impl postgres::GenericClient,
        ledger: &str,
    ) -> Result<Option<Head>, postgres::Error> {
        Ok(c.query_opt(
            "SELECT seq, hash FROM ledger_entries WHERE ledger = $1 ORDER BY seq DESC LIMIT 1",
            &[&ledger],
        )?
        .map(|r| Head {
            seq: seq_of(r.get(0)),
            hash: r.get(1),
        }))
    }

    /// Runs raw SQL (tests use it to tamper with the database as an attacker would).
    pub fn execute_raw(&self, sql: &str) -> Result<(), StoreError> {
        self.lock().batch_execute(sql).map_err(self.err())
    }
}

impl LedgerStore for PgStore {
    fn head(&self) -> Result<Option<Head>, StoreError> {
        Self::head_of(&mut *self.lock(), &self.ledger).map_err(self.err())
    }

    fn signed_head(&self) -> Result<Option<SignedHead>, StoreError> {
        Ok(self
            .lock()
            .query_opt(
                "SELECT seq, hash, sig FROM ledger_heads WHERE ledger = $1",
                &[&self.ledger],
            )
            .map_err(self.err())?
            .map(|r| SignedHead {
                head: Head {
                    seq: seq_of(r.get(0)),
                    hash: r.get(1),
                },
                sig: r.get(2),
            }))
    }

    fn append(
        &self,
        expected: Option<&Head>,
        rows: &[NewRow],
        head_sig: &str,
    ) -> Result<Head, StoreError> {
        let err = self.err();
        let mut client = self.lock();
        let mut tx = client.transaction().map_err(&err)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[&self.ledger],
        )
        .map_err(&err)?;
        let current = Self::head_of(&mut tx, &self.ledger).map_err(&err)?;
        if current.as_ref() != expected {
            return Err(StoreError::Conflict(current));
        }
        let Some(last) = rows.last().map(|r| r.head.clone()) else {
            return Err(StoreError::Db {
                path: self.url.clone(),
                message: "nothing to append".into(),
            });
        };
        let seqs: Vec<i64> = rows.iter().map(|r| seq_param(r.head.seq)).collect();
        let hashes: Vec<&str> = rows.iter().map(|r| r.head.hash.as_str()).collect();
        let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
        let envs: Vec<Option<&str>> = rows.iter().map(|r| r.env.as_deref()).collect();
        let builds: Vec<Option<&str>> = rows.iter().map(|r| r.build.as_deref()).collect();
        let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
        let inserted = tx
            .execute(
                "INSERT INTO ledger_entries (ledger, seq, hash, kind, env, build, text)
                 SELECT $1, s, h, k, e, b, t
                 FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                             $7::text[]) AS u(s, h, k, e, b, t)
                 ON CONFLICT (ledger, seq) DO NOTHING",
                &[&self.ledger, &seqs, &hashes, &kinds, &envs, &builds, &texts],
            )
            .map_err(&err)?;
        if inserted != rows.len() as u64 {
            // A position was taken after all (a writer that bypassed the lock): refuse.
            drop(tx);
            let now = Self::head_of(&mut *client, &self.ledger).map_err(&err)?;
            return Err(StoreError::Conflict(now));
        }
        tx.execute(
            "INSERT INTO ledger_heads (ledger, seq, hash, sig) VALUES ($1, $2, $3, $4)
             ON CONFLICT (ledger) DO UPDATE
                 SET seq = excluded.seq, hash = excluded.hash, sig = excluded.sig",
            &[&self.ledger, &seq_param(last.seq), &last.hash, &head_sig],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(last)
    }

    fn select(&self, filter: &Filter) -> Result<Vec<Row>, StoreError> {
        let kinds: Vec<&str> = filter.kinds.iter().map(String::as_str).collect();
        let rows = self
            .lock()
            .query(
                "SELECT seq, text FROM ledger_entries
                 WHERE ledger = $1
                   AND ($2::text IS NULL OR env = $2)
                   AND ($3::text IS NULL OR build = $3)
                   AND (cardinality($4::text[]) = 0 OR kind = ANY($4))
                 ORDER BY seq",
                &[&self.ledger, &filter.env, &filter.build, &kinds],
            )
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| Row {
                seq: seq_of(r.get(0)),
                text: r.get(1),
            })
            .collect())
    }

    fn scan(&self, from: u64, f: &mut dyn FnMut(Row) -> bool) -> Result<(), StoreError> {
        // In pages, so a long ledger is not held in memory at once.
        let mut next = seq_param(from);
        loop {
            let rows = self
                .lock()
                .query(
                    "SELECT seq, text FROM ledger_entries WHERE ledger = $1 AND seq >= $2
                     ORDER BY seq LIMIT 5000",
                    &[&self.ledger, &next],
                )
                .map_err(self.err())?;
            let Some(last) = rows.last().map(|r| r.get::<_, i64>(0)) else {
                return Ok(());
            };
            for r in &rows {
                if !f(Row {
                    seq: seq_of(r.get(0)),
                    text: r.get(1),
                }) {
                    return Ok(());
                }
            }
            next = last + 1;
        }
    }

    fn get(&self, seq: u64) -> Result<Option<Row>, StoreError> {
        Ok(self
            .lock()
            .query_opt(
                "SELECT seq, text FROM ledger_entries WHERE ledger = $1 AND seq = $2",
                &[&self.ledger, &seq_param(seq)],
            )
            .map_err(self.err())?
            .map(|r| Row {
                seq: seq_of(r.get(0)),
                text: r.get(1),
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_left_out_of_messages() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u@h:5432/db"
        );
        assert_eq!(redact("host=/tmp dbname=x"), "host=/tmp dbname=x");
    }
}
