//! The step cache: pipe's `cache:` extension on jobs and steps.
//!
//! ```yaml
//! jobs:
//!   build:
//!     cache:                 # defaults for every `run:` step of the job
//!       inputs: [src/**, Cargo.lock]
//!     steps:
//!       - run: cargo build --release
//!         cache:
//!           env: [RUSTFLAGS]
//!           outputs: [target/release/app]
//!           tools: [cargo, rustc]
//!           key: v2
//!       - run: ./deploy.sh
//!         cache: false       # never cached
//! ```
//!
//! A cached step's key is a SHA-256 ([`pipe_cache::KeyBuilder`]) over its evaluated
//! definition (shell, script, working directory, the env the workflow gives it), the executor
//! identity (OS, architecture and the declared `tools`, each by resolved path, size and
//! modification time), the digests of the files its `inputs` globs match (hashed with
//! [`pipe_cache::TreeHasher`]: git's index and the stat cache as fast paths), the values of
//! its `env` names (unset and empty differ) and its `key` salt.
//!
//! A hit restores the `outputs`, replays the log through the step's output sink (workflow
//! commands act again, masking applies), re-applies what the step wrote to its environment
//! files, and concludes the step as it did. A miss runs the step; a success is stored unless
//! an input changed while it ran (bazel#3360), a declared output is missing, or the log or the
//! environment files contain a secret. Failures are never stored, so a re-run retries them.
//!
//! Every lookup records the key's preimage per step (in the state directory), so a miss can
//! say what changed since the last stored result: `pipe why` prints it.

use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use pipe_cache::{Cache, EntryKey, Key, KeyBuilder, Lookup, Manifest, Preimage, TreeHasher};
use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, did_you_mean};
use crate::event::{CacheStatus, StepCacheInfo};
use crate::yaml::{Node, NodeKind, ScalarValue};

/// Namespace of step entries in the store.
pub const NAMESPACE: &str = "step";
/// Largest log a cached step may print (larger logs are not cached).
pub const MAX_LOG: usize = 64 << 20;
/// The keys of a `cache:` mapping.
pub const KEYS: &[&str] = &["inputs", "env", "outputs", "tools", "key"];

/// A `cache:` setting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheSpec {
    /// Globs of input files, relative to the workspace.
    pub inputs: Vec<String>,
    /// Environment variable names whose values enter the key.
    pub env: Vec<String>,
    /// Output paths or globs, relative to the workspace, restored on a hit.
    pub outputs: Vec<String>,
    /// Programs whose identity enters the key.
    pub tools: Vec<String>,
    /// A salt.
    pub key: Option<String>,
}

/// What a `cache:` value says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting {
    /// `cache: false`.
    Off,
    /// `cache: true` or a mapping.
    On(CacheSpec),
}

fn strings(node: &Node, field: &str, out: &mut Vec<Diagnostic>) -> Vec<String> {
    let one = |n: &Node, out: &mut Vec<Diagnostic>| -> Option<String> {
        match &n.kind {
            NodeKind::Scalar(s) if !matches!(s.value, ScalarValue::Null) && !s.text.is_empty() => {
                Some(s.text.clone())
            }
            _ => {
                out.push(Diagnostic::error(
                    "cache",
                    n.span,
                    format!("`cache.{field}` entries must be non-empty strings"),
                ));
                None
            }
        }
    };
    match &node.kind {
        NodeKind::Seq(items) => items.iter().filter_map(|n| one(n, out)).collect(),
        _ => one(node, out).into_iter().collect(),
    }
}

/// Reads a `cache:` value; problems are reported as diagnostics (rule `cache`) and the
/// setting is `None` when the value is unusable.
pub fn parse(node: &Node, out: &mut Vec<Diagnostic>) -> Option<Setting> {
    match &node.kind {
        NodeKind::Scalar(s) => match s.value {
            ScalarValue::Bool(true) => Some(Setting::On(CacheSpec::default())),
            ScalarValue::Bool(false) => Some(Setting::Off),
            _ => {
                out.push(
                    Diagnostic::error(
                        "cache",
                        node.span,
                        format!(
                            "`cache` must be a boolean or a mapping, not {}",
                            node.describe()
                        ),
                    )
                    .with_hint("e.g. `cache: { inputs: [src/**], outputs: [dist] }`"),
                );
                None
            }
        },
        NodeKind::Seq(_) => {
            out.push(
                Diagnostic::error(
                    "cache",
                    node.span,
                    "`cache` must be a boolean or a mapping, not a sequence",
                )
                .with_hint("put the globs under `inputs:`"),
            );
            None
        }
        NodeKind::Map(entries) => {
            let before = out.len();
            let mut spec = CacheSpec::default();
            for e in entries {
                let name = e.key.as_str().unwrap_or("");
                match name {
                    "inputs" => spec.inputs = strings(&e.value, name, out),
                    "env" => spec.env = strings(&e.value, name, out),
                    "outputs" => spec.outputs = strings(&e.value, name, out),
                    "tools" => spec.tools = strings(&e.value, name, out),
                    "key" => spec.key = strings(&e.value, name, out).into_iter().next(),
                    _ => {
                        let mut d = Diagnostic::error(
                            "cache",
                            e.key.span,
                            format!("unexpected key `{name}` in `cache`"),
                        );
                        d = match did_you_mean(name, KEYS.iter().copied()) {
                            Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                            None => d.with_hint(format!("expected one of {}", backticked(KEYS))),
                        };
                        out.push(d);
                    }
                }
            }
            for g in &spec.inputs {
                if let Err(e) = glob(g) {
                    out.push(Diagnostic::error(
                        "cache",
                        node.span,
                        format!("invalid input glob `{g}`: {e}"),
                    ));
                }
            }
            for o in &spec.outputs {
                let bare = o.trim_start_matches("./");
                if let Err(e) = pipe_cache::restore::check_rel_path(bare) {
                    out.push(
                        Diagnostic::error(
                            "cache",
                            node.span,
                            format!("invalid output path `{o}`: {e}"),
                        )
                        .with_hint("outputs are paths relative to the workspace"),
                    );
                } else if let Err(e) = glob(bare) {
                    out.push(Diagnostic::error(
                        "cache",
                        node.span,
                        format!("invalid output glob `{o}`: {e}"),
                    ));
                }
            }
            for v in &spec.env {
                if v.contains('=') || v.contains('\0') {
                    out.push(Diagnostic::error(
                        "cache",
                        node.span,
                        format!("`{v}` is not an environment variable name"),
                    ));
                }
            }
            (out.len() == before).then_some(Setting::On(spec))
        }
    }
}

fn backticked(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("`{w}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    GlobBuilder::new(pattern.trim_start_matches("./"))
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

fn glob_set(patterns: &[String]) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(glob(p).map_err(|e| format!("invalid glob `{p}`: {e}"))?);
        // `dir` also means everything below it.
        if !has_glob_chars(p) {
            let below = format!("{}/**", p.trim_start_matches("./").trim_end_matches('/'));
            b.add(glob(&below).map_err(|e| format!("invalid glob `{p}`: {e}"))?);
        }
    }
    b.build().map_err(|e| e.to_string())
}

fn has_glob_chars(p: &str) -> bool {
    p.contains(['*', '?', '[', '{'])
}

/// The spec that applies to a step: the step's own `cache:` merged over the job's (a field the
/// step sets replaces the job's), or the job's for a `run:` step without one. `None`: not
/// cached. Unusable values (reported by `pipe validate`) count as "not cached".
pub fn effective(job: Option<&Node>, step: Option<&Node>, is_run: bool) -> Option<CacheSpec> {
    if !is_run {
        return None;
    }
    let mut sink = Vec::new();
    let job = job.and_then(|n| parse(n, &mut sink));
    let step = step.and_then(|n| parse(n, &mut sink));
    match (job, step) {
        (_, Some(Setting::Off)) | (None, None) | (Some(Setting::Off), None) => None,
        (Some(Setting::On(j)), None) => Some(j),
        (None | Some(Setting::Off), Some(Setting::On(s))) => Some(s),
        (Some(Setting::On(j)), Some(Setting::On(s))) => Some(CacheSpec {
            inputs: if s.inputs.is_empty() {
                j.inputs
            } else {
                s.inputs
            },
            env: if s.env.is_empty() { j.env } else { s.env },
            outputs: if s.outputs.is_empty() {
                j.outputs
            } else {
                s.outputs
            },
            tools: if s.tools.is_empty() { j.tools } else { s.tools },
            key: s.key.or(j.key),
        }),
    }
}

/// Reports problems in every `cache:` value of a workflow (rule `cache`).
pub fn check(wf: &crate::workflow::Workflow, out: &mut Vec<Diagnostic>) {
    for job in &wf.jobs {
        if let Some(n) = &job.cache {
            parse(n, out);
        }
        for step in &job.steps {
            if let Some(n) = &step.cache {
                parse(n, out);
                if step.run.is_none() {
                    out.push(
                        Diagnostic::lint(
                            "cache",
                            n.span,
                            "`cache` has no effect on a `uses:` step",
                        )
                        .with_hint("only `run:` steps are cached"),
                    );
                }
            }
        }
    }
}

/// The process-wide step cache: the store (with its remote) and where preimages are kept.
#[derive(Debug)]
pub struct StepCache {
    /// The store.
    pub cache: Cache,
    /// Folder of per-step records (last key and preimage), in the repository's state folder.
    why_dir: PathBuf,
}

/// Everything a key is computed from (owned: the work runs on a blocking thread).
#[derive(Clone, Debug)]
pub struct KeyInput {
    /// Identity of the step across runs (workflow, job, leg, step id).
    pub identity: String,
    /// The spec.
    pub spec: CacheSpec,
    /// The evaluated definition, canonically encoded.
    pub definition: Vec<u8>,
    /// Executor name and identity parts (`os`, `arch`, image…).
    pub executor: Vec<(String, String)>,
    /// The step's final environment.
    pub env: Vec<(String, String)>,
    /// The workspace the globs are relative to.
    pub workspace: PathBuf,
    /// `PATH` for resolving `tools`.
    pub path: Option<String>,
}

/// A computed key.
#[derive(Debug)]
pub struct Computed {
    /// The key.
    pub key: Key,
    /// The input snapshot (to detect edits during the run).
    pub snapshot: Option<pipe_cache::TreeSnapshot>,
    /// What changed since the last stored result of this step (empty on a first run).
    pub changes: Vec<String>,
    /// Whether the step's last recorded key is this one (nothing to remember then).
    pub same_as_last: bool,
}

/// What is replayed on a hit, stored as the entry's metadata.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Recorded {
    /// Format version.
    pub version: u32,
    /// Exit code of the step.
    pub exit: i32,
    /// Content of `GITHUB_OUTPUT`.
    pub output: String,
    /// Content of `GITHUB_ENV`.
    pub env: String,
    /// Content of `GITHUB_PATH`.
    pub path: String,
    /// Content of `GITHUB_STEP_SUMMARY`.
    pub summary: String,
    /// Content of `GITHUB_STATE`.
    pub state: String,
    /// How long the step took when it ran.
    pub duration_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct LastRecord {
    identity: String,
    key: String,
    preimage: Preimage,
}

impl StepCache {
    /// A step cache over `cache`, keeping per-step records in `why_dir`.
    pub fn new(cache: Cache, why_dir: PathBuf) -> Self {
        StepCache { cache, why_dir }
    }

    fn record_path(&self, identity: &str) -> PathBuf {
        let d = pipe_cache::Digest::of(identity.as_bytes());
        self.why_dir.join(format!("{}.json", &d.hex()[..32]))
    }

    fn last(&self, identity: &str) -> Option<LastRecord> {
        let bytes = std::fs::read(self.record_path(identity)).ok()?;
        let r: LastRecord = serde_json::from_slice(&bytes).ok()?;
        (r.identity == identity).then_some(r)
    }

    fn remember(&self, identity: &str, key: &Key) {
        let r = LastRecord {
            identity: identity.to_owned(),
            key: key.hex(),
            preimage: key.preimage.clone(),
        };
        if let Ok(bytes) = serde_json::to_vec(&r) {
            let _ = std::fs::create_dir_all(&self.why_dir);
            // Losing it in a crash only loses one explanation: no fsync.
            let _ = crate::store::write_replace_quick(&self.record_path(identity), &bytes);
        }
    }

    /// What the step's last stored result recorded (for `--dry-run`, which cannot run a
    /// missing step and predicts its effects from its previous run).
    pub fn last_recorded(&self, identity: &str) -> Option<Recorded> {
        let last = self.last(identity)?;
        let m = self
            .cache
            .local()
            .get_entry(&EntryKey::new(NAMESPACE, &last.key))
            .ok()??;
        serde_json::from_slice(&m.metadata).ok()
    }

    /// Computes a step's key (blocking: it hashes the inputs).
    pub fn compute(&self, input: &KeyInput) -> Result<Computed, String> {
        let mut kb = KeyBuilder::new(NAMESPACE);
        kb.definition(&input.definition);
        for (name, identity) in &input.executor {
            kb.executor(name, identity);
        }
        for tool in &input.spec.tools {
            kb.executor(
                &format!("tool:{tool}"),
                &tool_identity(tool, input.path.as_deref()),
            );
        }
        for name in &input.spec.env {
            let v = input
                .env
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str());
            let v = v.map(str::to_owned).or_else(|| {
                // Not set by the workflow: the process environment the step inherits.
                std::env::var(name).ok()
            });
            kb.env(name, v.as_deref());
        }
        if let Some(salt) = &input.spec.key {
            kb.field("key", salt.as_bytes());
        }
        let mut snapshot = None;
        if !input.spec.inputs.is_empty() {
            let set = glob_set(&input.spec.inputs)?;
            let hasher = TreeHasher::new(&input.workspace)
                .stat_cache(&self.cache.local().stat_dir())
                .filter(move |path, is_dir| is_dir || set.is_match(path));
            let snap = hasher
                .hash()
                .map_err(|e| format!("cannot hash the inputs: {e}"))?;
            for f in &snap.files {
                kb.file(&f.path, &f.digest, f.mode);
            }
            if snap.files.is_empty() {
                kb.field(
                    "inputs-matched-nothing",
                    input.spec.inputs.join("\n").as_bytes(),
                );
            }
            snapshot = Some(snap);
        }
        let key = kb.finish();
        let last = self.last(&input.identity);
        let same_as_last = last.as_ref().is_some_and(|l| l.key == key.hex());
        let changes = match last {
            Some(last) if !same_as_last => describe(&key.preimage.diff(&last.preimage)),
            _ => Vec::new(),
        };
        Ok(Computed {
            key,
            snapshot,
            changes,
            same_as_last,
        })
    }

    /// Looks a key up; a hit is remembered as this step's latest key (unless it already is).
    pub fn lookup(&self, identity: &str, key: &Key, same_as_last: bool) -> Lookup {
        let l = self.cache.lookup(&EntryKey::new(NAMESPACE, &key.hex()));
        if matches!(l, Lookup::Hit { .. }) && !same_as_last {
            self.remember(identity, key);
        }
        l
    }

    /// Restores a hit's files and reads what to replay. `Err` means "treat as a miss".
    pub fn restore(&self, m: &Manifest, workspace: &Path) -> Result<(Vec<u8>, Recorded), String> {
        let recorded: Recorded = serde_json::from_slice(&m.metadata)
            .map_err(|e| format!("unreadable step record: {e}"))?;
        let log = self
            .cache
            .local()
            .read_attachment(m, "log")
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        self.cache
            .restore(m, workspace)
            .map_err(|e| e.to_string())?;
        Ok((log, recorded))
    }

    /// Stores a successful step. Returns why it was not stored, if it was not.
    pub fn save(
        &self,
        identity: &str,
        computed: &Computed,
        spec: &CacheSpec,
        workspace: &Path,
        log: &[u8],
        recorded: &Recorded,
    ) -> Result<Vec<String>, String> {
        if let Some(snap) = &computed.snapshot {
            let changed = snap.changed_files();
            if let Some(first) = changed.first() {
                return Err(format!(
                    "input `{first}` changed while the step ran; the result was not cached"
                ));
            }
        }
        let outputs = expand_outputs(&spec.outputs, workspace)?;
        let meta = serde_json::to_vec(recorded).map_err(|e| e.to_string())?;
        let key = EntryKey::new(NAMESPACE, &computed.key.hex());
        let outcome = self.cache.save_with(&key, |b| {
            for rel in &outputs {
                b.add_path(workspace, rel)?;
            }
            b.attach("log", log)?;
            b.metadata(&meta);
            Ok(())
        });
        if outcome.local {
            if !computed.same_as_last {
                self.remember(identity, &computed.key);
            }
            Ok(outcome.warnings)
        } else {
            Err(outcome
                .warnings
                .first()
                .cloned()
                .unwrap_or_else(|| "the result was not cached".to_owned()))
        }
    }
}

/// Resolves `outputs` to existing relative paths: a literal path must exist; a glob may match
/// nothing.
fn expand_outputs(outputs: &[String], workspace: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut globs = Vec::new();
    for o in outputs {
        let bare = o.trim_start_matches("./").trim_end_matches('/');
        if has_glob_chars(bare) {
            globs.push(bare.to_owned());
        } else if std::fs::symlink_metadata(workspace.join(bare)).is_ok() {
            out.push(bare.to_owned());
        } else {
            return Err(format!(
                "output `{o}` does not exist after the step; the result was not cached"
            ));
        }
    }
    if !globs.is_empty() {
        let set = glob_set(&globs)?;
        let snap = TreeHasher::new(workspace)
            .git(false)
            .gitignore(false)
            .filter({
                let set = set.clone();
                move |path, is_dir| is_dir || set.is_match(path)
            })
            .hash()
            .map_err(|e| format!("cannot list the outputs: {e}"))?;
        out.extend(snap.files.into_iter().map(|f| f.path));
    }
    out.sort();
    out.dedup();
    // A folder already covers the paths below it.
    let mut kept: Vec<String> = Vec::new();
    for p in out {
        if !kept.iter().any(|k| p.starts_with(&format!("{k}/"))) {
            kept.push(p);
        }
    }
    Ok(kept)
}

/// A program's identity: resolved path, size and modification time (changes on upgrade).
fn tool_identity(tool: &str, path: Option<&str>) -> String {
    let resolved = if tool.contains('/') {
        Some(PathBuf::from(tool))
    } else {
        let p = path
            .map(str::to_owned)
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_default();
        p.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(tool))
            .find(|c| c.is_file())
    };
    match resolved.and_then(|p| std::fs::metadata(&p).ok().map(|m| (p, m))) {
        Some((p, m)) => {
            use std::os::unix::fs::MetadataExt;
            format!(
                "{} {} {}.{}",
                p.display(),
                m.size(),
                m.mtime(),
                m.mtime_nsec()
            )
        }
        None => "not found".to_owned(),
    }
}

/// Human words for key changes (`pipe why`).
pub fn describe(changes: &[pipe_cache::key::Change]) -> Vec<String> {
    use pipe_cache::key::{Change, PartKind};
    let what = |kind: PartKind, name: &str| match kind {
        PartKind::Definition => {
            "the step's definition (script, shell, working directory or env)".to_owned()
        }
        PartKind::Executor => match name.strip_prefix("tool:") {
            Some(t) => format!("tool `{t}`"),
            None => format!("executor `{name}`"),
        },
        PartKind::File => format!("input file `{name}`"),
        PartKind::Env => format!("env `{name}`"),
        PartKind::Field if name == "key" => "the `key` salt".to_owned(),
        PartKind::Field => format!("`{name}`"),
    };
    changes
        .iter()
        .map(|c| match c {
            Change::Added { kind, name } => format!("{} was added", what(*kind, name)),
            Change::Removed { kind, name } => format!("{} was removed", what(*kind, name)),
            Change::Changed { kind, name, .. } => format!("{} changed", what(*kind, name)),
            Change::Incompatible { reason } => format!("the key format changed ({reason})"),
        })
        .collect()
}

/// The info reported for a hit.
pub fn hit_info(key: &Key, source: pipe_cache::Source, duration_ms: u64) -> StepCacheInfo {
    StepCacheInfo {
        status: CacheStatus::Hit,
        key: key.hex(),
        source: Some(match source {
            pipe_cache::Source::Local => "local".to_owned(),
            pipe_cache::Source::Remote => "remote".to_owned(),
        }),
        changes: Vec::new(),
        saved: None,
        note: None,
        saved_ms: Some(duration_ms),
    }
}

/// The info reported for a miss.
pub fn miss_info(key: &Key, changes: Vec<String>) -> StepCacheInfo {
    StepCacheInfo {
        status: CacheStatus::Miss,
        key: key.hex(),
        source: None,
        changes,
        saved: Some(false),
        note: None,
        saved_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::FileId;

    fn node(text: &str) -> Node {
        let loaded = crate::yaml::load(FileId(0), text);
        loaded.root.expect("a document")
    }

    #[test]
    fn parses_booleans_and_mappings() {
        let mut d = Vec::new();
        assert_eq!(
            parse(&node("true"), &mut d),
            Some(Setting::On(CacheSpec::default()))
        );
        assert_eq!(parse(&node("false"), &mut d), Some(Setting::Off));
        let s = parse(
            &node("{inputs: [src/**, a.txt], env: FOO, outputs: [out], key: v2}"),
            &mut d,
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            s,
            Some(Setting::On(CacheSpec {
                inputs: vec!["src/**".into(), "a.txt".into()],
                env: vec!["FOO".into()],
                outputs: vec!["out".into()],
                tools: vec![],
                key: Some("v2".into()),
            }))
        );
    }

    #[test]
    fn reports_bad_values_with_hints() {
        let mut d = Vec::new();
        assert_eq!(parse(&node("{input: [a]}"), &mut d), None);
        assert_eq!(d[0].message, "unexpected key `input` in `cache`");
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `inputs`?"));
        d.clear();
        parse(&node("{outputs: [../x]}"), &mut d);
        assert!(d[0].message.contains("invalid output path `../x`"), "{d:?}");
        d.clear();
        parse(&node("{inputs: ['a[']}"), &mut d);
        assert!(d[0].message.contains("invalid input glob"), "{d:?}");
        d.clear();
        parse(&node("3"), &mut d);
        assert!(d[0].message.contains("boolean or a mapping"), "{d:?}");
    }

    #[test]
    fn step_settings_merge_over_the_job() {
        let job = node("{inputs: [src/**], key: j}");
        let step = node("{outputs: [dist]}");
        let s = effective(Some(&job), Some(&step), true).expect("cached");
        assert_eq!(s.inputs, vec!["src/**"]);
        assert_eq!(s.outputs, vec!["dist"]);
        assert_eq!(s.key.as_deref(), Some("j"));
        assert_eq!(effective(Some(&job), Some(&node("false")), true), None);
        assert_eq!(effective(Some(&job), None, false), None);
        assert_eq!(effective(None, None, true), None);
    }

    #[test]
    fn outputs_expand_globs_and_require_literals() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("dist/sub")).expect("mkdir");
        std::fs::write(dir.path().join("dist/a.js"), "a").expect("write");
        std::fs::write(dir.path().join("dist/sub/b.js"), "b").expect("write");
        std::fs::write(dir.path().join("x.txt"), "x").expect("write");
        let got = expand_outputs(&["dist/**/*.js".into(), "x.txt".into()], dir.path()).expect("ok");
        assert_eq!(got, vec!["dist/a.js", "dist/sub/b.js", "x.txt"]);
        let got = expand_outputs(&["dist".into(), "dist/a.js".into()], dir.path()).expect("ok");
        assert_eq!(got, vec!["dist"]);
        let e = expand_outputs(&["missing".into()], dir.path()).expect_err("missing");
        assert!(e.contains("`missing` does not exist"));
    }
}
