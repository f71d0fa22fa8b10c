//! The action registry: what a step's `uses:` names, found without the network.
//!
//! - `./path` (and `$/path`): a folder of the workspace with `action.yml` or `action.yaml`.
//! - `owner/repo[/path]@ref`: a built-in action registered by name (`owner/repo[/path]`, any
//!   ref), else the offline action folder: `DIR/owner/repo@ref/[path/]action.yml`.
//! - `docker://image`: run by the step runner in a container (the Docker executor).
//!
//! An action that cannot be found fails its step at once with a message that says how to
//! provide it; nothing is ever downloaded. Metadata files are read once per run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use indexmap::IndexMap;

use crate::check::{UsesRef, parse_uses};
use crate::executor::{Cancel, OutputSink};
use crate::source::{FileId, SourceFile};
use crate::workflow::{ActionMeta, ActionRuns};

/// Maximum nesting of composite actions (GitHub documents "up to 10 composite actions").
pub const MAX_COMPOSITE_DEPTH: usize = 10;

/// What a built-in action gets to run.
pub struct BuiltinCall<'a> {
    /// `uses:` as written.
    pub uses: &'a str,
    /// The ref after `@`.
    pub git_ref: &'a str,
    /// Inputs (`with:`), names lower-cased.
    pub inputs: &'a IndexMap<String, String>,
    /// The step's environment: the run's default variables (`CI`, `GITHUB_SHA`,
    /// `GITHUB_WORKSPACE`…), then workflow, job and step `env` and `GITHUB_ENV` values.
    pub env: &'a [(String, String)],
    /// `GITHUB_WORKSPACE` on the host.
    pub workspace: &'a Path,
    /// `RUNNER_TEMP` of the job on the host.
    pub temp: &'a Path,
    /// Cancellation of the step.
    pub cancel: &'a Cancel,
    /// The user's repository (the root `pipe run` started in; `workspace` differs under
    /// `--isolate`).
    pub repository: &'a Path,
    /// The run's record folder (`runs/<N>` in the state directory; artifacts live below), or
    /// `None` when the run is not recorded.
    pub run_dir: Option<&'a Path>,
    /// State shared by the main run and the post phase: what `run` puts here, `post` gets
    /// (like `STATE_*` of JavaScript actions).
    pub state: &'a mut IndexMap<String, String>,
}

/// A built-in action's result: outputs, or why it failed.
pub type BuiltinResult = Result<IndexMap<String, String>, String>;

/// An action pipe implements itself (checkout, cache, scan…). Implementations live in the
/// `pipe-actions` crate and are registered by the CLI.
#[async_trait]
pub trait BuiltinAction: Send + Sync {
    /// Runs the action; its log goes to `out` (workflow commands such as `::add-mask::` and
    /// `::warning::` work there).
    async fn run(&self, call: BuiltinCall<'_>, out: &mut dyn OutputSink) -> BuiltinResult;

    /// The condition of the action's post phase (`post-if`, e.g. `success()`), or `None` when it
    /// has none (the default). A post phase is registered when the main step ran and runs after
    /// the job's steps, in reverse order with the JavaScript actions' `post` scripts, as
    /// `Post <step name>` (id `post:<step id>`).
    fn post_if(&self) -> Option<&'static str> {
        None
    }

    /// The post phase: gets the same inputs, the state the main run left in `call.state`, and
    /// the environment at the end of the job. An `Err` fails the post step.
    async fn post(&self, call: BuiltinCall<'_>, out: &mut dyn OutputSink) -> Result<(), String> {
        let _ = (call, out);
        Ok(())
    }
}

/// A resolved action.
#[derive(Clone)]
pub enum Resolved {
    /// An action with metadata on disk (composite, JavaScript or Docker).
    Meta(Arc<LoadedAction>),
    /// A built-in action.
    Builtin {
        /// The implementation.
        action: Arc<dyn BuiltinAction>,
        /// The ref after `@`.
        git_ref: String,
    },
}

/// An action read from its folder.
pub struct LoadedAction {
    /// The action's folder (`github.action_path`).
    pub dir: PathBuf,
    /// Its `action.yml`.
    pub file: PathBuf,
    /// The metadata.
    pub meta: ActionMeta,
    /// The metadata's text (positions in runtime errors).
    pub source: Arc<SourceFile>,
    /// `github.action_repository` (empty for local actions).
    pub repository: String,
    /// `github.action_ref` (empty for local actions).
    pub git_ref: String,
}

impl LoadedAction {
    /// `using:` of the action.
    pub fn using(&self) -> &str {
        match &self.meta.runs {
            ActionRuns::Composite { .. } => "composite",
            ActionRuns::Node { using, .. } => &using.text,
            ActionRuns::Docker { .. } => "docker",
            ActionRuns::Invalid => "",
        }
    }
}

/// Finds actions: built-ins, local folders and the offline action folder.
#[derive(Default)]
pub struct ActionRegistry {
    builtins: Vec<(String, Arc<dyn BuiltinAction>)>,
    action_dir: Option<PathBuf>,
    loaded: Mutex<HashMap<PathBuf, Arc<LoadedAction>>>,
}

impl std::fmt::Debug for ActionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionRegistry")
            .field(
                "builtins",
                &self.builtins.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("action_dir", &self.action_dir)
            .finish()
    }
}

impl ActionRegistry {
    /// An empty registry (local actions only).
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `dir` as the offline action folder (layout `owner/repo@ref/…`).
    pub fn with_action_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.action_dir = dir;
        self
    }

    /// The offline action folder, if one is set.
    pub fn action_dir(&self) -> Option<&Path> {
        self.action_dir.as_deref()
    }

    /// Registers a built-in action under `owner/repo[/path]` (matched case-insensitively, for
    /// every ref).
    pub fn register(&mut self, name: &str, action: Arc<dyn BuiltinAction>) {
        self.builtins.push((name.to_ascii_lowercase(), action));
    }

    /// Names of the registered built-in actions.
    pub fn builtin_names(&self) -> Vec<&str> {
        self.builtins.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Resolves a step's `uses:`; `workspace` is where local actions are looked up. `Err` says
    /// why the action cannot run and how to provide it.
    pub fn resolve(&self, uses: &str, workspace: &Path) -> Result<Resolved, String> {
        match parse_uses(uses)? {
            // The step runner runs `docker://` steps itself, before resolving.
            UsesRef::Docker(image) => Err(format!(
                "`docker://{image}` is a container step, not an action to resolve"
            )),
            UsesRef::Local(path) => {
                let rel = path.trim_start_matches("$/").trim_start_matches("./");
                let dir = workspace.join(rel);
                match self.load_dir(&dir, String::new(), String::new())? {
                    Some(a) => Ok(Resolved::Meta(a)),
                    None => Err(format!(
                        "local action `{uses}` not found: no `action.yml` or `action.yaml` in `{}`",
                        dir.display()
                    )),
                }
            }
            UsesRef::Remote {
                owner,
                repo,
                path,
                git_ref,
            } => {
                let name = if path.is_empty() {
                    format!("{owner}/{repo}")
                } else {
                    format!("{owner}/{repo}/{path}")
                };
                let lower = name.to_ascii_lowercase();
                if let Some((_, b)) = self.builtins.iter().find(|(n, _)| *n == lower) {
                    return Ok(Resolved::Builtin {
                        action: b.clone(),
                        git_ref,
                    });
                }
                let Some(base) = &self.action_dir else {
                    return Err(format!(
                        "action `{uses}` is not available offline: pipe never downloads actions; put a copy at `DIR/{owner}/{repo}@{git_ref}` and pass `--action-dir DIR` (or set `dir` under `[actions]` in `.pipe/config.toml`)"
                    ));
                };
                let root = base.join(owner.as_str()).join(format!("{repo}@{git_ref}"));
                let dir = if path.is_empty() {
                    root.clone()
                } else {
                    root.join(&path)
                };
                match self.load_dir(&dir, format!("{owner}/{repo}"), git_ref.clone())? {
                    Some(a) => Ok(Resolved::Meta(a)),
                    None if root.is_dir() => Err(format!(
                        "action `{uses}` is not available offline: `{}` has no `action.yml` or `action.yaml`",
                        dir.display()
                    )),
                    None => Err(format!(
                        "action `{uses}` is not available offline: copy it to `{}` in the action folder (pipe never downloads actions)",
                        root.display()
                    )),
                }
            }
        }
    }

    /// Reads `dir/action.yml` (or `.yaml`) once; `Ok(None)` when there is none.
    fn load_dir(
        &self,
        dir: &Path,
        repository: String,
        git_ref: String,
    ) -> Result<Option<Arc<LoadedAction>>, String> {
        if let Ok(map) = self.loaded.lock()
            && let Some(a) = map.get(dir)
        {
            return Ok(Some(a.clone()));
        }
        for name in ["action.yml", "action.yaml"] {
            let file = dir.join(name);
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let (meta, diags) = crate::workflow::load_action(FileId(0), &text);
            let source = Arc::new(SourceFile::new(file.clone(), text));
            let errors: Vec<String> = diags
                .iter()
                .filter(|d| d.severity == crate::Severity::Error)
                .map(|d| {
                    let lc = source.line_col(d.span.start);
                    format!("{}:{}:{}: {}", file.display(), lc.line, lc.col, d.message)
                })
                .collect();
            let meta = match meta {
                Some(m) if errors.is_empty() => m,
                _ => {
                    return Err(format!(
                        "action metadata `{}` is invalid: {}",
                        file.display(),
                        if errors.is_empty() {
                            "it is not a mapping".to_owned()
                        } else {
                            errors.join("; ")
                        }
                    ));
                }
            };
            let loaded = Arc::new(LoadedAction {
                dir: dir.to_path_buf(),
                file,
                meta,
                source,
                repository,
                git_ref,
            });
            if let Ok(mut map) = self.loaded.lock() {
                map.insert(dir.to_path_buf(), loaded.clone());
            }
            return Ok(Some(loaded));
        }
        Ok(None)
    }
}

/// The environment variable of an input: `INPUT_` and the name upper-cased with spaces turned
/// into underscores (dashes are kept, as the runner does).
pub fn input_env_name(name: &str) -> String {
    format!("INPUT_{}", name.replace(' ', "_").to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;

    #[async_trait]
    impl BuiltinAction for Nop {
        async fn run(&self, _: BuiltinCall<'_>, _: &mut dyn OutputSink) -> BuiltinResult {
            Ok(IndexMap::new())
        }
    }

    #[test]
    fn input_names() {
        assert_eq!(input_env_name("my input-x"), "INPUT_MY_INPUT-X");
    }

    #[test]
    fn resolves_local_remote_builtin_and_missing() {
        let t = tempfile::tempdir().expect("tmp");
        let ws = t.path().join("ws");
        let dir = t.path().join("mirror");
        std::fs::create_dir_all(ws.join("a")).expect("mkdir");
        std::fs::write(
            ws.join("a/action.yml"),
            "name: a\nruns:\n  using: composite\n  steps:\n    - run: echo\n      shell: bash\n",
        )
        .expect("write");
        std::fs::create_dir_all(dir.join("o/r@v1/sub")).expect("mkdir");
        std::fs::write(
            dir.join("o/r@v1/sub/action.yaml"),
            "name: r\nruns:\n  using: node20\n  main: main.js\n",
        )
        .expect("write");
        let mut reg = ActionRegistry::new().with_action_dir(Some(dir.clone()));
        reg.register("pipe/echo", Arc::new(Nop));
        assert!(
            matches!(reg.resolve("./a", &ws), Ok(Resolved::Meta(a)) if a.using() == "composite")
        );
        assert!(
            matches!(reg.resolve("o/r/sub@v1", &ws), Ok(Resolved::Meta(a)) if a.using() == "node20" && a.repository == "o/r")
        );
        assert!(matches!(
            reg.resolve("Pipe/Echo@v9", &ws),
            Ok(Resolved::Builtin { .. })
        ));
        let e = reg.resolve("o/r@v2", &ws).err().unwrap_or_default();
        assert!(e.contains("not available offline"), "{e}");
        assert!(e.contains("o/r@v2"), "{e}");
        let e = reg.resolve("./missing", &ws).err().unwrap_or_default();
        assert!(e.contains("not found"), "{e}");
        let e = ActionRegistry::new()
            .resolve("o/r@v1", &ws)
            .err()
            .unwrap_or_default();
        assert!(e.contains("--action-dir"), "{e}");
    }
}
