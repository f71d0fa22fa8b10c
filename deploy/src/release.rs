//! Release records and environment state, under `deploy/<env>/` in the repository's state
//! folder:
//!
//! ```text
//! releases/<seq>.json   one Release per deploy or rollback (written atomically, updated
//!                       as it progresses)
//! logs/<seq>.log        the deploy command's output
//! state.json            EnvState: current and last verified release, slots, active slot, hold
//! ```
//!
//! A release is the build plus the environment's deploy configuration *as it was* plus the
//! resolved plan (slot, variables), so a rollback replays exactly what ran — not today's
//! configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::{EnvDeploy, Strategy};
use crate::verify::Verdict;

/// A subject of a build: an image index or a file, by digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Its name (`ghcr.io/acme/app`, `app.tar.gz`).
    pub name: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Where it can be fetched (`oci://…@sha256:…`, a path), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// The build being deployed, as the promotion crate knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRef {
    /// `sha256:<hex>` over the subjects.
    pub id: String,
    /// The short alias (`bold-otter`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The subjects.
    pub subjects: Vec<Subject>,
}

impl BuildRef {
    /// `sha256:7d1e2a4b5c6d` (12 hex digits) and the alias.
    pub fn short(&self) -> String {
        let hex = self.id.strip_prefix("sha256:").unwrap_or(&self.id);
        let s = format!("sha256:{}", &hex[..hex.len().min(12)]);
        match &self.alias {
            Some(a) => format!("{s} ({a})"),
            None => s,
        }
    }

    /// Whether `query` names this build: the full id, a ≥ 7-digit hex prefix (with or
    /// without `sha256:`) or the alias.
    pub fn matches(&self, query: &str) -> bool {
        let hex = self.id.strip_prefix("sha256:").unwrap_or(&self.id);
        let q = query.strip_prefix("sha256:").unwrap_or(query);
        self.id == query
            || self.alias.as_deref() == Some(query)
            || (q.len() >= 7 && q.chars().all(|c| c.is_ascii_hexdigit()) && hex.starts_with(q))
    }
}

/// Where a release is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    /// The deploy command is running.
    Deploying,
    /// Deployed, verification running.
    Verifying,
    /// Deployed and verified (or deployed with no `verify:`).
    Verified,
    /// Verification was inconclusive and `on_inconclusive: hold` kept it, unverified.
    Held,
    /// Deploy or verify failed and it was not rolled back (or the rollback failed).
    Failed,
    /// Deploy or verify failed and the environment went back to an earlier release.
    RolledBack,
    /// `pipe` was interrupted while it was in flight.
    Interrupted,
}

impl std::fmt::Display for ReleaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReleaseState::Deploying => "deploying",
            ReleaseState::Verifying => "verifying",
            ReleaseState::Verified => "verified",
            ReleaseState::Held => "held",
            ReleaseState::Failed => "failed",
            ReleaseState::RolledBack => "rolled back",
            ReleaseState::Interrupted => "interrupted",
        })
    }
}

/// The resolved deploy plan: what exactly was run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The strategy (`none` when the environment has no `deploy:`).
    pub strategy: Option<Strategy>,
    /// The blue-green slot deployed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// That slot's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_addr: Option<String>,
    /// The environment given to the deploy command (pipe's variables and `deploy.env`).
    pub env: BTreeMap<String, String>,
}

/// A summary of a verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifySummary {
    /// The verdict.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
    /// Samples taken.
    pub samples: u32,
    /// Healthy samples.
    pub healthy: u32,
    /// Unhealthy samples.
    pub unhealthy: u32,
    /// Unknown samples.
    pub unknown: u32,
}

/// One deploy or rollback of a build to an environment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// Schema version (1).
    pub v: u32,
    /// Number within the environment, from 1.
    pub seq: u64,
    /// The environment.
    pub env: String,
    /// The build.
    pub build: BuildRef,
    /// The environment's deploy configuration as it was used.
    pub config: EnvDeploy,
    /// `sha256:` of `config`.
    pub config_digest: String,
    /// The resolved plan.
    pub plan: Plan,
    /// `sha256:` of `plan`.
    pub plan_digest: String,
    /// The release that was current when this one started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<u64>,
    /// This release is a rollback restoring that earlier release's build and plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restores: Option<u64>,
    /// `manual` or `auto` for rollbacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
    /// Who asked.
    pub actor: String,
    /// Why (required for rollbacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where it is in its life.
    pub state: ReleaseState,
    /// Why it failed, or how it was rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// When rolled back: the release the environment went back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<u64>,
    /// The verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySummary>,
    /// Start (RFC 3339).
    pub started: String,
    /// End (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// Milliseconds from start to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// The environment's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvState {
    /// The release the environment runs (serves, for blue-green).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    /// The last release that passed verification here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified: Option<u64>,
    /// Blue-green: which release each slot runs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slots: BTreeMap<String, u64>,
    /// Blue-green: the slot the proxy serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_slot: Option<String>,
    /// Set by an automatic rollback: automatic promotion to this environment waits for a
    /// human (the promotion crate reads and clears it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
}

/// Errors reading or writing records.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// I/O.
    #[error("`{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A record that does not parse.
    #[error("`{path}` is corrupt: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        message: String,
    },
}

/// The records of one environment.
#[derive(Clone, Debug)]
pub struct EnvStore {
    /// `deploy/<env>/`.
    pub dir: PathBuf,
    /// The environment's name.
    pub env: String,
}

/// The folder of `env` under the repository's state folder.
pub fn env_dir(state_dir: &Path, env: &str) -> PathBuf {
    state_dir.join("deploy").join(env)
}

/// The environments that have records, sorted.
pub fn environments(state_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(state_dir.join("deploy"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

impl EnvStore {
    /// The store of `env`.
    pub fn open(state_dir: &Path, env: &str) -> EnvStore {
        EnvStore {
            dir: env_dir(state_dir, env),
            env: env.to_owned(),
        }
    }

    fn release_path(&self, seq: u64) -> PathBuf {
        self.dir.join("releases").join(format!("{seq:06}.json"))
    }

    /// The deploy log of release `seq`.
    pub fn log_path(&self, seq: u64) -> PathBuf {
        self.dir.join("logs").join(format!("{seq:06}.log"))
    }

    /// Writes a release record.
    pub fn save(&self, r: &Release) -> Result<(), StoreError> {
        let path = self.release_path(r.seq);
        crate::write_json(&path, r).map_err(|source| StoreError::Io { path, source })
    }

    /// Reads release `seq`.
    pub fn load(&self, seq: u64) -> Result<Release, StoreError> {
        read_json(&self.release_path(seq))
    }

    /// Every release, oldest first.
    pub fn list(&self) -> Result<Vec<Release>, StoreError> {
        let dir = self.dir.join("releases");
        let mut seqs: Vec<u64> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".json")?
                        .parse::<u64>()
                        .ok()
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(StoreError::Io { path: dir, source }),
        };
        seqs.sort_unstable();
        seqs.into_iter().map(|s| self.load(s)).collect()
    }

    /// The next release number.
    pub fn next_seq(&self) -> Result<u64, StoreError> {
        Ok(self.list()?.last().map_or(1, |r| r.seq + 1))
    }

    /// The environment's state (default when none was written).
    pub fn state(&self) -> Result<EnvState, StoreError> {
        let path = self.dir.join("state.json");
        if !path.exists() {
            return Ok(EnvState::default());
        }
        read_json(&path)
    }

    /// Writes the environment's state.
    pub fn save_state(&self, s: &EnvState) -> Result<(), StoreError> {
        let path = self.dir.join("state.json");
        crate::write_json(&path, s).map_err(|source| StoreError::Io { path, source })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|source| StoreError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// `PIPE_SUBJECT_<NAME>`: the name upper-cased, every other character `_`.
pub fn subject_var(name: &str) -> String {
    let mut s = String::from("PIPE_SUBJECT_");
    for c in name.chars() {
        s.push(if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_match_by_id_prefix_or_alias() {
        let b = BuildRef {
            id: "sha256:7d1e2a4b5c6d7e8f".into(),
            alias: Some("bold-otter".into()),
            subjects: vec![],
        };
        assert!(b.matches("sha256:7d1e2a4b5c6d7e8f"));
        assert!(b.matches("7d1e2a4"));
        assert!(b.matches("sha256:7d1e2a4b"));
        assert!(b.matches("bold-otter"));
        assert!(!b.matches("7d1e")); // too short to be unambiguous
        assert!(!b.matches("7d1e2a4c"));
        assert_eq!(b.short(), "sha256:7d1e2a4b5c6d (bold-otter)");
        assert_eq!(
            subject_var("ghcr.io/acme/app"),
            "PIPE_SUBJECT_GHCR_IO_ACME_APP"
        );
    }
}
