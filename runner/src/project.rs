//! The project a command works on: its root, its committed configuration (`.pipe/config.toml`)
//! and the workflow files it holds.
//!
//! `.pipe/` holds only committed configuration (decisions.md). The runner label list that
//! `validate` accepts also reads `self-hosted-runner.labels` from `.github/actionlint.yaml`,
//! where users already keep it.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;

/// Finds the repository root: the nearest ancestor of `start` holding `.git` (a directory, or a
/// file for worktrees and submodules); `start` itself outside git.
pub fn find_root(start: &Path) -> PathBuf {
    let mut dir = Some(start);
    while let Some(d) = dir {
        if d.join(".git").exists() {
            return d.to_path_buf();
        }
        dir = d.parent();
    }
    start.to_path_buf()
}

/// `.pipe/config.toml`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// `[runners]`.
    #[serde(default)]
    pub runners: RunnersConfig,
    /// `[actions]`.
    #[serde(default)]
    pub actions: ActionsConfig,
    /// `[cache]`.
    #[serde(default)]
    pub cache: CacheConfig,
    /// `[run]` defaults.
    #[serde(default)]
    pub run: RunDefaults,
}

/// `[runners]`: self-hosted label sets and label → image mapping.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunnersConfig {
    /// Extra labels that are valid in `runs-on` (self-hosted runner labels).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Label → container image (the same as `-P LABEL=IMAGE`).
    #[serde(default)]
    pub images: IndexMap<String, String>,
}

/// `[actions]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ActionsConfig {
    /// The offline action folder (layout `owner/repo@ref/…`), relative to the root.
    pub dir: Option<PathBuf>,
}

/// `[cache]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheConfig {
    /// Remote cache URL.
    pub remote: Option<String>,
    /// Never write to the remote.
    #[serde(default)]
    pub read_only: bool,
    /// Maximum local store size (e.g. `10GiB`).
    pub max_size: Option<String>,
    /// Maximum age of local entries (e.g. `30d`).
    pub max_age: Option<String>,
}

/// `[run]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunDefaults {
    /// Default for `-p/--parallel`.
    pub parallel: Option<usize>,
}

/// A configuration file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("{path}:{line}:{col}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads `.pipe/config.toml` under `root` (defaults when absent).
    pub fn load(root: &Path) -> Result<Config, ConfigError> {
        let path = root.join(".pipe").join("config.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::parse(&path, &text)
    }

    /// Parses config text; errors name the file, line and column.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let (line, col) = e
                .span()
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    (
                        before.matches('\n').count() + 1,
                        before.rsplit('\n').next().unwrap_or("").chars().count() + 1,
                    )
                })
                .unwrap_or((1, 1));
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                col,
                message: e.message().trim_end_matches('\n').to_owned(),
            }
        })
    }
}

/// Extra runner labels from `.github/actionlint.yaml` (`self-hosted-runner.labels`), if any.
pub fn actionlint_labels(root: &Path) -> Vec<String> {
    #[derive(Deserialize, Default)]
    struct SelfHosted {
        #[serde(default)]
        labels: Vec<String>,
    }
    #[derive(Deserialize, Default)]
    struct ActionlintConfig {
        #[serde(default, rename = "self-hosted-runner")]
        self_hosted_runner: Option<SelfHosted>,
    }
    for name in ["actionlint.yaml", "actionlint.yml"] {
        let path = root.join(".github").join(name);
        if let Ok(text) = std::fs::read_to_string(&path) {
            let cfg: ActionlintConfig = serde_saphyr::from_str(&text).unwrap_or_default();
            return cfg.self_hosted_runner.map(|s| s.labels).unwrap_or_default();
        }
    }
    Vec::new()
}

/// Whether a path names a YAML file.
pub fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml")
    )
}

/// Whether a path names action metadata (`action.yml` / `action.yaml`).
pub fn is_action_file(path: &Path) -> bool {
    matches!(
        path.file_name().and_then(|e| e.to_str()),
        Some("action.yml" | "action.yaml")
    )
}

/// Collects the YAML files below `dir`, sorted, recursively (hidden directories other than
/// `.github` are skipped).
pub fn yaml_files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            let ft = entry.file_type()?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if ft.is_dir() {
                if name.starts_with('.') && name != ".github" {
                    continue;
                }
                if name == "target" || name == "node_modules" {
                    continue;
                }
                stack.push(path);
            } else if is_yaml(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_line_and_column() {
        let ok = Config::parse(
            Path::new("c.toml"),
            "[runners]\nlabels = [\"gpu\"]\n[runners.images]\nubuntu-latest = \"img\"\n",
        )
        .expect("valid");
        assert_eq!(ok.runners.labels, vec!["gpu"]);
        assert_eq!(
            ok.runners.images.get("ubuntu-latest").map(String::as_str),
            Some("img")
        );
        let err =
            Config::parse(Path::new("c.toml"), "[runners]\nlabel = []\n").expect_err("unknown key");
        let msg = err.to_string();
        assert!(
            msg.starts_with("c.toml:2:1: unknown field `label`"),
            "{msg}"
        );
    }

    #[test]
    fn root_discovery() {
        let t = tempfile::tempdir().expect("tmp");
        let sub = t.path().join("a/b");
        std::fs::create_dir_all(&sub).expect("mkdir");
        assert_eq!(find_root(&sub), sub);
        std::fs::create_dir(t.path().join(".git")).expect("mkdir");
        assert_eq!(find_root(&sub), t.path());
    }
}

/// A file read for loading: its text (lossy when not UTF-8) and the offset of the first invalid
/// byte, if any.
#[derive(Debug)]
pub struct ReadText {
    /// The text; invalid sequences are replaced with U+FFFD.
    pub text: String,
    /// Byte offset of the first invalid UTF-8 sequence.
    pub invalid_utf8_at: Option<usize>,
}

/// Reads a file as text without failing on bad encodings (the caller reports them).
pub fn read_text(path: &Path) -> std::io::Result<ReadText> {
    let bytes = std::fs::read(path)?;
    Ok(match String::from_utf8(bytes) {
        Ok(text) => ReadText {
            text,
            invalid_utf8_at: None,
        },
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            ReadText {
                text: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                invalid_utf8_at: Some(at),
            }
        }
    })
}

/// Shows `path` relative to `base` when it is below it.
pub fn display_path(path: &Path, base: &Path) -> PathBuf {
    path.strip_prefix(base)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}
