//! Builds: content-addressed units a run produced.
//!
//! A run declares its subjects through the policy's `build:` section (job outputs holding
//! digests, artifacts the run uploaded). `build_id = sha256(JCS({"subjects": [...] sorted by
//! name}))`, shown with a short alias (`bold-otter`). Registering a build copies the run's
//! evidence (the summary with its job conclusions and reports, the `pipe/scan` and `pipe/bench`
//! JSON) into a content-addressed folder (`promote/evidence/<hex>`, which outlives run pruning)
//! and appends a `build.registered` entry naming every digest; gates read the evidence back
//! through those digests only.

use std::path::{Path, PathBuf};

use pipe_runner::event::Summary;
use serde::{Deserialize, Serialize};

use crate::ledger::entry::{canonical, sha256_id};
use crate::ledger::{Actor, Draft, Entry, Filter, Ledger, LedgerError, kind};
use crate::policy::{BuildSpec, SubjectSource};

/// One subject: a name and its digest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subject {
    /// Name.
    pub name: String,
    /// `sha256:<hex>`.
    pub digest: String,
}

/// A job (leg) conclusion recorded with a build.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobFact {
    /// Job id.
    pub id: String,
    /// Display name (matrix values included).
    pub name: String,
    /// `success`, `failure`, `cancelled`, `skipped`.
    pub conclusion: String,
}

/// A piece of evidence kept with a build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// `summary`, `results`, `scan`, `bench`.
    pub kind: String,
    /// The file it came from (relative to the run folder).
    pub name: String,
    /// Its digest (the blob is `promote/evidence/<hex>`).
    pub digest: String,
}

/// The body of a `build.registered` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BuildBody {
    /// The subjects, sorted by name.
    pub subjects: Vec<Subject>,
    /// Its alias.
    pub alias: String,
    /// The run.
    pub run: u64,
    /// The workflow file.
    pub workflow: String,
    /// The run's conclusion.
    pub conclusion: String,
    /// The commit.
    pub sha: String,
    /// The ref (`refs/heads/main`, `refs/tags/v1`).
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Job conclusions.
    pub jobs: Vec<JobFact>,
    /// Evidence.
    pub evidence: Vec<Evidence>,
}

/// A registered build.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Build {
    /// `sha256:<hex>`.
    pub id: String,
    /// The facts.
    #[serde(flatten)]
    pub body: BuildBody,
    /// When it was registered.
    pub registered: String,
    /// The ledger entry.
    pub seq: u64,
}

/// A build problem.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A subject could not be resolved.
    #[error("{0}")]
    Subject(String),
    /// A file could not be read or written.
    #[error("{what} `{path}`: {message}")]
    Io {
        /// What.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// No build matches.
    #[error("no build matches `{0}`")]
    NotFound(String),
    /// Several builds match.
    #[error("`{0}` matches several builds: {1}")]
    Ambiguous(String, String),
}

/// The build id of a subject list.
pub fn build_id(subjects: &[Subject]) -> String {
    let mut s = subjects.to_vec();
    s.sort();
    let doc = serde_json::json!({ "subjects": s });
    // Canonicalising a list of strings cannot fail.
    sha256_id(&canonical(&doc).unwrap_or_default())
}

const ADJECTIVES: &[&str] = &[
    "amber", "bold", "brave", "brisk", "calm", "clever", "cosy", "crisp", "dapper", "eager",
    "fair", "fancy", "gentle", "glad", "grand", "happy", "jolly", "keen", "kind", "lively",
    "lucky", "merry", "mighty", "neat", "nimble", "noble", "plucky", "proud", "quick", "quiet",
    "rapid", "ruby", "sharp", "shiny", "silver", "sleek", "smart", "snug", "solid", "sunny",
    "swift", "tidy", "vivid", "warm", "wise", "witty", "young", "zesty",
];
const ANIMALS: &[&str] = &[
    "badger", "bat", "bear", "beaver", "bison", "cobra", "crane", "crow", "deer", "dingo", "eagle",
    "eel", "falcon", "ferret", "finch", "fox", "gecko", "goose", "hare", "hawk", "heron", "ibis",
    "jackal", "koala", "lemur", "lion", "llama", "lynx", "marten", "mole", "moose", "newt",
    "otter", "owl", "panda", "puffin", "quail", "raven", "seal", "shrew", "sloth", "stoat", "swan",
    "tapir", "tiger", "viper", "walrus", "wombat",
];

/// A short, stable alias of a build id: `adjective-animal-xxxx`.
pub fn alias(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    let byte = |i: usize| {
        hex.get(i * 2..i * 2 + 2)
            .and_then(|b| u8::from_str_radix(b, 16).ok())
            .unwrap_or(0) as usize
    };
    format!(
        "{}-{}-{}",
        ADJECTIVES[byte(0) % ADJECTIVES.len()],
        ANIMALS[byte(1) % ANIMALS.len()],
        hex.get(4..8).unwrap_or("0000")
    )
}

/// Extracts a `sha256:<64 hex>` digest from a value (`sha256:…` or `name@sha256:…`).
pub fn digest_in(value: &str) -> Option<String> {
    let at = value.rfind("sha256:")?;
    let hex = value.get(at + 7..at + 7 + 64)?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && value.len() == at + 71)
        .then(|| format!("sha256:{}", hex.to_ascii_lowercase()))
}

/// Resolves the subjects a run produced.
pub fn subjects_of(
    spec: &BuildSpec,
    summary: &Summary,
    run_dir: &Path,
) -> Result<Vec<Subject>, BuildError> {
    subjects_from(
        spec,
        summary.run,
        |job, output| {
            summary
                .jobs
                .iter()
                .filter(|j| j.id == job)
                .filter_map(|j| j.outputs.get(output))
                .find(|v| !v.is_empty())
                .cloned()
        },
        |name| {
            let root = run_dir.join("artifacts").join(name).join("files");
            let mut files = Vec::new();
            walk(&root, &root, &mut files)?;
            files
                .into_iter()
                .map(|(rel, path)| {
                    let bytes = std::fs::read(&path).map_err(|e| BuildError::Io {
                        what: "cannot read",
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                    Ok((rel, sha256_id(&bytes)))
                })
                .collect()
        },
    )
}

/// Resolves the subjects of run `run` from where its facts are kept: `output(job, name)` is
/// the first non-empty value of a job's output, `artifact(name)` the regular files of an
/// artifact as (path relative to the artifact, `sha256:` digest). `pipe run` reads its run
/// folder ([`subjects_of`]); `pipe server` reads its database and blob store, so a run on
/// either names the same build.
pub fn subjects_from(
    spec: &BuildSpec,
    run: u64,
    output: impl Fn(&str, &str) -> Option<String>,
    artifact: impl Fn(&str) -> Result<Vec<(String, String)>, BuildError>,
) -> Result<Vec<Subject>, BuildError> {
    let mut out = Vec::new();
    for s in &spec.subjects {
        match &s.source {
            SubjectSource::Output { job, output: name } => {
                let Some(v) = output(job, name) else {
                    return Err(BuildError::Subject(format!(
                        "subject `{}`: job `{job}` has no output `{name}` in run {run}",
                        s.name
                    )));
                };
                let digest = digest_in(&v).ok_or_else(|| {
                    BuildError::Subject(format!(
                        "subject `{}`: output `{job}.{name}` is `{v}`, not a `sha256:` digest",
                        s.name
                    ))
                })?;
                out.push(Subject {
                    name: s.name.clone(),
                    digest,
                });
            }
            SubjectSource::Artifact(name) => {
                let files = artifact(name)?;
                if files.is_empty() {
                    return Err(BuildError::Subject(format!(
                        "subject `{}`: run {run} uploaded no artifact `{name}`",
                        s.name
                    )));
                }
                for (rel, digest) in files {
                    out.push(Subject {
                        name: format!("{}/{rel}", s.name),
                        digest,
                    });
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), BuildError> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let ft = e.file_type().map_err(|err| BuildError::Io {
            what: "cannot read",
            path: p.clone(),
            message: err.to_string(),
        })?;
        if ft.is_dir() {
            walk(root, &p, out)?;
        } else if ft.is_file() {
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            out.push((rel, p));
        }
    }
    Ok(())
}

/// The content-addressed evidence folder of a state folder.
pub fn evidence_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("promote").join("evidence")
}

/// Keeps bytes as evidence; returns their digest.
pub fn store_evidence(state_dir: &Path, bytes: &[u8]) -> Result<String, BuildError> {
    let digest = sha256_id(bytes);
    let dir = evidence_dir(state_dir);
    let path = dir.join(digest.trim_start_matches("sha256:"));
    if !path.exists() {
        std::fs::create_dir_all(&dir)
            .and_then(|()| pipe_runner::store::write_atomic(&path, bytes))
            .map_err(|e| BuildError::Io {
                what: "cannot write",
                path: path.clone(),
                message: e.to_string(),
            })?;
    }
    Ok(digest)
}

/// Reads evidence back, checking its digest.
pub fn read_evidence(state_dir: &Path, digest: &str) -> Result<Vec<u8>, BuildError> {
    let path = evidence_dir(state_dir).join(digest.trim_start_matches("sha256:"));
    let bytes = std::fs::read(&path).map_err(|e| BuildError::Io {
        what: "cannot read evidence",
        path: path.clone(),
        message: e.to_string(),
    })?;
    if sha256_id(&bytes) != digest {
        return Err(BuildError::Io {
            what: "evidence does not match its digest",
            path,
            message: "the file was altered".into(),
        });
    }
    Ok(bytes)
}

/// What a run left that registration needs.
#[derive(Clone, Debug)]
pub struct RunFacts<'a> {
    /// The run's folder (`runs/<N>`).
    pub run_dir: &'a Path,
    /// Its summary.
    pub summary: &'a Summary,
    /// The commit it ran at.
    pub sha: &'a str,
    /// The ref.
    pub git_ref: &'a str,
}

/// Whether runs of `workflow` produce builds under `spec` (its `workflow:`, when set, names
/// the file).
pub fn spec_applies(spec: &BuildSpec, workflow: &str) -> bool {
    spec.workflow
        .as_ref()
        .is_none_or(|w| Path::new(w) == Path::new(workflow) || workflow.ends_with(w.as_str()))
}

/// Registers the build a run produced (when the run's workflow matches `spec.workflow`).
/// Returns `None` when the spec does not apply to this run.
pub fn register(
    ledger: &Ledger,
    state_dir: &Path,
    spec: &BuildSpec,
    run: &RunFacts<'_>,
    actor: Actor,
) -> Result<Option<Build>, BuildError> {
    if !spec_applies(spec, &run.summary.workflow) {
        return Ok(None);
    }
    let subjects = subjects_of(spec, run.summary, run.run_dir)?;
    let id = build_id(&subjects);
    let mut evidence = Vec::new();
    let mut keep = |kind: &str, rel: &str| -> Result<(), BuildError> {
        let path = run.run_dir.join(rel);
        if let Ok(bytes) = std::fs::read(&path) {
            let digest = store_evidence(state_dir, &bytes)?;
            evidence.push(Evidence {
                kind: kind.to_owned(),
                name: rel.to_owned(),
                digest,
            });
        }
        Ok(())
    };
    keep("summary", "summary.json")?;
    keep("results", "results.json")?;
    if let Ok(rd) = std::fs::read_dir(run.run_dir.join("evidence")) {
        let mut names: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            let kind = n.split('-').next().unwrap_or("other").to_owned();
            keep(&kind, &format!("evidence/{n}"))?;
        }
    }
    let body = BuildBody {
        subjects,
        alias: alias(&id),
        run: run.summary.run,
        workflow: run.summary.workflow.clone(),
        conclusion: run.summary.conclusion.as_str().to_owned(),
        sha: run.sha.to_owned(),
        git_ref: run.git_ref.to_owned(),
        jobs: run
            .summary
            .jobs
            .iter()
            .map(|j| JobFact {
                id: j.id.clone(),
                name: j.name.clone(),
                conclusion: j.conclusion.as_str().to_owned(),
            })
            .collect(),
        evidence,
    };
    let json = serde_json::to_value(&body).map_err(|e| BuildError::Subject(e.to_string()))?;
    let e = ledger.append(Draft::new(kind::BUILD_REGISTERED, actor, json).build(&id))?;
    Ok(Some(Build {
        id,
        body,
        registered: e.time,
        seq: e.seq,
    }))
}

fn from_entry(e: Entry) -> Option<Build> {
    let body: BuildBody = serde_json::from_value(e.body).ok()?;
    Some(Build {
        id: e.build?,
        body,
        registered: e.time,
        seq: e.seq,
    })
}

/// Every registered build, newest registration last; a build registered by several runs
/// appears once, with its latest registration.
pub fn list(ledger: &Ledger) -> Result<Vec<Build>, BuildError> {
    let entries = ledger.select(&Filter {
        kinds: vec![kind::BUILD_REGISTERED.to_owned()],
        ..Filter::default()
    })?;
    let mut out: Vec<Build> = Vec::new();
    for b in entries.into_iter().filter_map(from_entry) {
        out.retain(|o| o.id != b.id);
        out.push(b);
    }
    Ok(out)
}

/// Finds a build by full id, a unique prefix of at least 12 hex digits, or its alias.
pub fn resolve(ledger: &Ledger, text: &str) -> Result<Build, BuildError> {
    let all = list(ledger)?;
    let hex = text
        .strip_prefix("sha256:")
        .unwrap_or(text)
        .to_ascii_lowercase();
    let matches: Vec<&Build> = all
        .iter()
        .filter(|b| {
            b.body.alias == text
                || (hex.len() >= 12
                    && hex.bytes().all(|c| c.is_ascii_hexdigit())
                    && b.id.trim_start_matches("sha256:").starts_with(&hex))
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(BuildError::NotFound(text.to_owned())),
        many => Err(BuildError::Ambiguous(
            text.to_owned(),
            many.iter()
                .map(|b| b.body.alias.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_id_ignores_subject_order_and_alias_is_stable() {
        let a = Subject {
            name: "a".into(),
            digest: format!("sha256:{}", "1".repeat(64)),
        };
        let b = Subject {
            name: "b".into(),
            digest: format!("sha256:{}", "2".repeat(64)),
        };
        let id = build_id(&[a.clone(), b.clone()]);
        assert_eq!(id, build_id(&[b.clone(), a.clone()]));
        assert_ne!(id, build_id(&[a]));
        assert_eq!(alias(&id), alias(&id));
        assert_eq!(alias(&id).split('-').count(), 3);
    }

    #[test]
    fn digests_in_output_values() {
        let hex = "ab".repeat(32);
        assert_eq!(
            digest_in(&format!("sha256:{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(
            digest_in(&format!("127.0.0.1:5000/app@sha256:{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(digest_in(&format!("sha256:{hex}x")), None);
        assert_eq!(digest_in("latest"), None);
        assert_eq!(digest_in("sha256:abc"), None);
    }
}
