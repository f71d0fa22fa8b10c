//! `actions/upload-artifact` (v4.6.2 surface, outputs `artifact-id`, `artifact-url`,
//! `artifact-digest`) and `actions/download-artifact` (v4.3.0), stored
//! with the run's records: `runs/<N>/artifacts/<name>/artifact.json`, the files as one pack
//! `files.pack` (`pipe_cache::pack`) and its index `pack.json`. Artifacts stored before packs
//! (and those `pipe agent` downloads) are a `files/` folder, which downloads still read.
//!
//! v4 semantics: names are immutable within a run (a second upload of a name fails unless
//! `overwrite: true`, which replaces it under a new id); the files keep their paths relative
//! to the least common ancestor of the search paths (a single file is stored by its name);
//! hidden files are left out unless `include-hidden-files: true`. Ids increase per run.
//! Downloading by `name` writes into `path` itself; by `pattern`, `artifact-ids` or everything,
//! each artifact goes to `path/<name>` unless `merge-multiple: true`. `compression-level` is
//! checked but files are stored as they are (nothing crosses a network).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use indexmap::IndexMap;
use pipe_runner::executor::OutputSink;
use pipe_runner::run::action::{BuiltinAction, BuiltinCall, BuiltinResult};
use serde::{Deserialize, Serialize};

use crate::util::{
    common_ancestor, env, expand, input, input_bool, input_lines, line, par_chunks, resolve,
    warn_unexpected, warning,
};
use pipe_cache::pack::Source;
use pipe_cache::{FileEntry, FileKind};

const UPLOAD_INPUTS: &[&str] = &[
    "name",
    "path",
    "if-no-files-found",
    "retention-days",
    "compression-level",
    "overwrite",
    "include-hidden-files",
];

const DOWNLOAD_INPUTS: &[&str] = &[
    "name",
    "artifact-ids",
    "path",
    "pattern",
    "merge-multiple",
    "github-token",
    "repository",
    "run-id",
];

/// Characters an artifact name may not contain.
const INVALID_NAME_CHARS: &[char] = &['"', ':', '<', '>', '|', '*', '?', '\r', '\n', '\\', '/'];

/// What `artifact.json` records of one artifact.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArtifactInfo {
    /// Id, unique within the run.
    pub id: u64,
    /// Name, unique within the run.
    pub name: String,
    /// Total size of the files in bytes.
    pub size: u64,
    /// Number of files.
    pub files: u64,
    /// Retention in days: past it the artifact is gone (removed when next listed, as GitHub
    /// expires it; pruning a run removes its artifacts too).
    pub retention_days: u32,
    /// The job that uploaded it.
    pub job: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// SHA-256 over the stored paths and their contents' SHA-256 (`artifact-digest`; GitHub's
    /// is the digest of its zip, which pipe does not make).
    #[serde(default)]
    pub digest: String,
}

/// The artifacts folder of a run.
pub fn artifacts_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("artifacts")
}

/// The pack of an artifact's files, in its folder (see `pipe_cache::pack`).
pub const PACK_FILE: &str = "files.pack";
/// The pack's index (a JSON list of `pipe_cache::FileEntry`), beside it.
pub const INDEX_FILE: &str = "pack.json";

/// Whether an artifact is past its retention at `now` (seconds since the epoch).
pub fn expired(info: &ArtifactInfo, now: u64) -> bool {
    info.retention_days > 0
        && info
            .created
            .saturating_add(u64::from(info.retention_days) * 86_400)
            < now
}

/// Every finished artifact of a run, by id, with where its files are: the pack
/// (`files.pack`), or for artifacts stored before packs (and those `pipe agent` downloads)
/// the `files` folder. Artifacts past their `retention-days` are removed as they are found,
/// never listed.
pub fn list(run_dir: &Path) -> Vec<(ArtifactInfo, PathBuf)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(artifacts_dir(run_dir)) else {
        return out;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for e in rd.flatten() {
        let p = e.path();
        let Ok(text) = std::fs::read_to_string(p.join("artifact.json")) else {
            continue;
        };
        if let Ok(info) = serde_json::from_str::<ArtifactInfo>(&text) {
            if expired(&info, now) {
                if let Err(err) = std::fs::remove_dir_all(&p) {
                    tracing::warn!("cannot remove expired artifact `{}`: {err}", p.display());
                }
                continue;
            }
            let pack = p.join(PACK_FILE);
            out.push((
                info,
                if pack.is_file() {
                    pack
                } else {
                    p.join("files")
                },
            ));
        }
    }
    out.sort_by_key(|(i, _)| i.id);
    out
}

fn run_dir<'a>(call: &BuiltinCall<'a>) -> Result<&'a Path, String> {
    call.run_dir.ok_or_else(|| {
        "artifacts need a recorded run: the state directory could not be written".to_owned()
    })
}

/// The next id of a run: folders `artifact-ids/<n>` beside `artifacts/` are claimed with an
/// exclusive `mkdir` (beside it, so no artifact name can collide with them).
fn next_id(dir: &Path) -> Result<u64, String> {
    let ids = dir.parent().unwrap_or(dir).join("artifact-ids");
    std::fs::create_dir_all(&ids).map_err(|e| format!("cannot create `{}`: {e}", ids.display()))?;
    let mut n = std::fs::read_dir(&ids)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    loop {
        n += 1;
        match std::fs::create_dir(ids.join(n.to_string())) {
            Ok(()) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot allocate an artifact id: {e}")),
        }
    }
}

/// Copies a file or symlink, making parent folders.
fn copy_entry(from: &Path, to: &Path) -> std::io::Result<u64> {
    if let Some(p) = to.parent() {
        std::fs::create_dir_all(p)?;
    }
    let meta = std::fs::symlink_metadata(from)?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from)?;
        let _ = std::fs::remove_file(to);
        std::os::unix::fs::symlink(target, to)?;
        Ok(0)
    } else {
        std::fs::copy(from, to)
    }
}

/// `actions/upload-artifact`.
pub struct Upload;

#[async_trait]
impl BuiltinAction for Upload {
    async fn run(&self, call: BuiltinCall<'_>, out: &mut dyn OutputSink) -> BuiltinResult {
        let i = call.inputs;
        warn_unexpected(out, i, UPLOAD_INPUTS, call.uses);
        let name = match input(i, "name") {
            "" => "artifact",
            n => n,
        }
        .to_owned();
        if let Some(c) = name.chars().find(|c| INVALID_NAME_CHARS.contains(c)) {
            return Err(format!(
                "the artifact name is not valid: `{name}` contains the character {c:?}; invalid characters include: {}",
                INVALID_NAME_CHARS
                    .iter()
                    .map(|c| format!("{c:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        // `.` and `..` would name the artifacts folder or the run itself.
        if name == "." || name == ".." {
            return Err(format!("the artifact name is not valid: `{name}`"));
        }
        let patterns = input_lines(i, "path");
        if patterns.is_empty() {
            return Err("input required and not supplied: path".to_owned());
        }
        let if_none = match input(i, "if-no-files-found") {
            "" | "warn" => "warn",
            v @ ("error" | "ignore") => v,
            v => {
                return Err(format!(
                    "unrecognized `if-no-files-found` input: `{v}`; available options: warn, error, ignore"
                ));
            }
        };
        let retention_days: u32 = match input(i, "retention-days") {
            "" | "0" => 90,
            v => match v.parse::<u32>() {
                Ok(d) if d > 90 => {
                    warning(
                        out,
                        &format!(
                            "retention days cannot be greater than the maximum allowed retention set within the repository; using 90 instead of {d}"
                        ),
                    );
                    90
                }
                Ok(d) => d,
                Err(_) => return Err(format!("invalid `retention-days`: `{v}`")),
            },
        };
        match input(i, "compression-level") {
            "" => {}
            v => match v.parse::<u8>() {
                Ok(l) if l <= 9 => {}
                _ => {
                    return Err(format!(
                        "invalid `compression-level`: `{v}`; valid values are 0-9"
                    ));
                }
            },
        }
        let overwrite = input_bool(i, "overwrite", false)?;
        let hidden = input_bool(i, "include-hidden-files", false)?;
        let matched = expand(&patterns, call.workspace, call.env, hidden)?;
        if matched.files.is_empty() {
            let msg = format!(
                "No files were found with the provided path: {}. No artifacts will be uploaded.",
                patterns.join("\n")
            );
            match if_none {
                "error" => return Err(msg),
                "warn" => warning(out, &msg),
                _ => line(out, &msg),
            }
            return Ok(IndexMap::new());
        }
        // The root: a single file is stored by its name; otherwise paths are relative to the
        // least common ancestor of the search paths.
        let root = if matched.files.len() == 1
            && matched.search_paths.len() == 1
            && matched.search_paths[0] == matched.files[0]
        {
            matched.files[0]
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        } else {
            common_ancestor(&matched.search_paths)
        };
        line(
            out,
            &format!(
                "With the provided path, there will be {} file(s) uploaded",
                matched.files.len()
            ),
        );
        let run = run_dir(&call)?;
        let dir = artifacts_dir(run);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        let adir = dir.join(&name);
        let job = env(call.env, "GITHUB_JOB").unwrap_or("").to_owned();
        let info = tokio::task::block_in_place(|| -> Result<ArtifactInfo, String> {
            match std::fs::create_dir(&adir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if !overwrite {
                        return Err(format!(
                            "failed to create artifact: an artifact with the name `{name}` already exists on the workflow run (set `overwrite: true` to replace it)"
                        ));
                    }
                    line(
                        out,
                        &format!("Artifact '{name}' will be deleted and replaced"),
                    );
                    std::fs::remove_dir_all(&adir)
                        .and_then(|()| std::fs::create_dir(&adir))
                        .map_err(|e| format!("cannot replace `{}`: {e}", adir.display()))?;
                }
                Err(e) => return Err(format!("cannot create `{}`: {e}", adir.display())),
            }
            // One pack file (read, hashed and written on several threads) and its index;
            // each file's SHA-256 goes into the digest, which covers every stored path with
            // its content, in path order.
            let sources: Vec<Source> = matched
                .files
                .iter()
                .map(|f| {
                    let rel = f.strip_prefix(&root).unwrap_or(f);
                    let rel = rel.strip_prefix("/").unwrap_or(rel);
                    Source {
                        path: f.clone(),
                        rel: rel.to_string_lossy().into_owned(),
                    }
                })
                .collect();
            let entries = match write_pack(&adir, &sources) {
                Ok(e) => e,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&adir);
                    return Err(format!("cannot upload artifact `{name}`: {e}"));
                }
            };
            let mut stored: Vec<(&str, pipe_cache::Digest, u64)> = entries
                .iter()
                .filter_map(|e| match &e.kind {
                    FileKind::File { blob, .. } => Some((e.path.as_str(), blob.digest, blob.size)),
                    FileKind::Symlink { target } => Some((
                        e.path.as_str(),
                        pipe_cache::Digest::of(target.as_bytes()),
                        0,
                    )),
                    FileKind::Dir => None,
                })
                .collect();
            stored.sort_by(|a, b| a.0.cmp(b.0));
            let mut listing = pipe_cache::Hasher::new();
            let mut size = 0;
            for (rel, content, n) in &stored {
                listing.update(rel.as_bytes());
                listing.update(b"\0");
                listing.update(content.as_bytes());
                size += n;
            }
            let digest = listing.finish().hex();
            let id = next_id(&dir)?;
            let created = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let info = ArtifactInfo {
                id,
                name: name.clone(),
                size,
                files: matched.files.len() as u64,
                retention_days,
                job,
                created,
                digest,
            };
            let json = serde_json::to_vec_pretty(&info).map_err(|e| e.to_string())?;
            pipe_runner::store::write_atomic(&adir.join("artifact.json"), &json)
                .map_err(|e| format!("cannot write `{}`: {e}", adir.display()))?;
            Ok(info)
        })?;
        let url = format!(
            "{}/{}/actions/runs/{}/artifacts/{}",
            env(call.env, "GITHUB_SERVER_URL").unwrap_or("https://github.com"),
            env(call.env, "GITHUB_REPOSITORY").unwrap_or(""),
            env(call.env, "GITHUB_RUN_ID").unwrap_or(""),
            info.id
        );
        line(
            out,
            &format!(
                "Artifact {name} has been successfully uploaded! Final size is {} bytes. Artifact ID is {}",
                info.size, info.id
            ),
        );
        line(out, &format!("Artifact download URL: {url}"));
        let mut outputs = IndexMap::new();
        outputs.insert("artifact-id".to_owned(), info.id.to_string());
        outputs.insert("artifact-url".to_owned(), url);
        outputs.insert("artifact-digest".to_owned(), info.digest.clone());
        Ok(outputs)
    }
}

/// Writes the pack of `sources` and its index into the artifact folder `adir` (each through
/// a temp file and a rename); returns the index.
fn write_pack(adir: &Path, sources: &[Source]) -> Result<Vec<FileEntry>, String> {
    let tmp = tempfile::NamedTempFile::new_in(adir).map_err(|e| e.to_string())?;
    let (entries, _) = pipe_cache::pack::write(
        tmp.as_file(),
        tmp.path(),
        sources,
        pipe_cache::pack::threads(),
    )
    .map_err(|e| e.to_string())?;
    tmp.persist(adir.join(PACK_FILE))
        .map_err(|e| e.error.to_string())?;
    let index = serde_json::to_vec(&entries).map_err(|e| e.to_string())?;
    pipe_runner::store::write_atomic(&adir.join(INDEX_FILE), &index).map_err(|e| e.to_string())?;
    Ok(entries)
}

/// Writes an artifact's files (`files` as [`list`] gives it: a pack, or a folder for
/// artifacts stored before packs) into `to`, every packed file verified first.
pub fn extract(files: &Path, to: &Path) -> Result<(), String> {
    if files.is_file() {
        let index = files.parent().unwrap_or(Path::new(".")).join(INDEX_FILE);
        pipe_cache::restore::unpack_packed(files, &index, to).map_err(|e| e.to_string())
    } else if files.is_dir() {
        copy_tree(files, to)
    } else {
        std::fs::create_dir_all(to).map_err(|e| e.to_string())
    }
}

/// Copies a tree (files and symlinks, on several threads), replacing files that exist.
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create `{}`: {e}", to.display()))?;
    let mut files = Vec::new();
    let mut stack = vec![from.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot list `{}`: {e}", dir.display()))?;
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    par_chunks(&files, |chunk| {
        for p in chunk {
            let rel = p.strip_prefix(from).unwrap_or(p);
            copy_entry(p, &to.join(rel)).map_err(|e| format!("`{}`: {e}", rel.display()))?;
        }
        Ok(())
    })?;
    Ok(())
}

/// `actions/download-artifact`.
pub struct Download;

#[async_trait]
impl BuiltinAction for Download {
    async fn run(&self, call: BuiltinCall<'_>, out: &mut dyn OutputSink) -> BuiltinResult {
        let i = call.inputs;
        warn_unexpected(out, i, DOWNLOAD_INPUTS, call.uses);
        let name = input(i, "name");
        let ids = input(i, "artifact-ids");
        if !name.is_empty() && !ids.is_empty() {
            return Err(
                "inputs `name` and `artifact-ids` cannot be used together; specify only one"
                    .to_owned(),
            );
        }
        let ours = env(call.env, "GITHUB_REPOSITORY").unwrap_or("");
        let repo = input(i, "repository");
        if !repo.is_empty() && !repo.eq_ignore_ascii_case(ours) {
            return Err(format!(
                "downloading artifacts of `{repo}` is not available offline: pipe keeps only this repository's runs"
            ));
        }
        let merge = input_bool(i, "merge-multiple", false)?;
        let mut run = run_dir(&call)?.to_path_buf();
        let this_run = env(call.env, "GITHUB_RUN_ID").unwrap_or("");
        match input(i, "run-id") {
            "" => {}
            r if r == this_run => {}
            r => {
                let n: u64 = r.parse().map_err(|_| format!("invalid `run-id`: `{r}`"))?;
                run = run
                    .parent()
                    .map(|p| p.join(n.to_string()))
                    .unwrap_or_default();
                if !run.is_dir() {
                    return Err(format!("run #{n} is not recorded"));
                }
            }
        }
        let all = list(&run);
        let dest = match input(i, "path") {
            "" => call.workspace.to_path_buf(),
            p => resolve(call.workspace, call.env, p),
        };
        let single = !name.is_empty();
        let chosen: Vec<(ArtifactInfo, PathBuf)> = if single {
            match all.into_iter().find(|(a, _)| a.name == name) {
                Some(a) => vec![a],
                None => return Err(format!("artifact `{name}` not found")),
            }
        } else if !ids.is_empty() {
            let mut wanted = Vec::new();
            for s in ids.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                wanted.push(
                    s.parse::<u64>()
                        .map_err(|_| format!("invalid artifact id `{s}` in `artifact-ids`"))?,
                );
            }
            let found: Vec<_> = all
                .into_iter()
                .filter(|(a, _)| wanted.contains(&a.id))
                .collect();
            let missing: Vec<String> = wanted
                .iter()
                .filter(|w| !found.iter().any(|(a, _)| a.id == **w))
                .map(u64::to_string)
                .collect();
            if !missing.is_empty() {
                warning(
                    out,
                    &format!(
                        "could not find the following artifact id(s): {}",
                        missing.join(", ")
                    ),
                );
            }
            found
        } else {
            match input(i, "pattern") {
                "" => all,
                p => {
                    let g = globset::Glob::new(p)
                        .map_err(|e| format!("invalid `pattern` `{p}`: {e}"))?
                        .compile_matcher();
                    all.into_iter()
                        .filter(|(a, _)| g.is_match(&a.name))
                        .collect()
                }
            }
        };
        tokio::task::block_in_place(|| -> Result<(), String> {
            for (a, files) in &chosen {
                let target = if single || merge {
                    dest.clone()
                } else {
                    dest.join(&a.name)
                };
                line(
                    out,
                    &format!(
                        "Downloading artifact '{}' (ID {}) to {}",
                        a.name,
                        a.id,
                        target.display()
                    ),
                );
                extract(files, &target)
                    .map_err(|e| format!("cannot download artifact `{}`: {e}", a.name))?;
            }
            Ok(())
        })?;
        line(
            out,
            &format!("Total of {} artifact(s) downloaded", chosen.len()),
        );
        let mut outputs = IndexMap::new();
        outputs.insert(
            "download-path".to_owned(),
            dest.to_string_lossy().into_owned(),
        );
        Ok(outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(run: &Path, id: u64, name: &str, retention_days: u32, created: u64) -> PathBuf {
        let dir = artifacts_dir(run).join(id.to_string());
        std::fs::create_dir_all(dir.join("files")).expect("mkdir");
        let info = ArtifactInfo {
            id,
            name: name.to_owned(),
            size: 0,
            files: 0,
            retention_days,
            job: "j".to_owned(),
            created,
            digest: String::new(),
        };
        std::fs::write(
            dir.join("artifact.json"),
            serde_json::to_vec(&info).expect("json"),
        )
        .expect("write");
        dir
    }

    #[test]
    fn expired_artifacts_are_removed_when_listed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let day = 86_400;
        let old = store(tmp.path(), 1, "old", 1, now - 2 * day);
        let kept = store(tmp.path(), 2, "kept", 90, now - 30 * day);
        let fresh = store(tmp.path(), 3, "fresh", 1, now - 3600);
        let names: Vec<String> = list(tmp.path()).into_iter().map(|(a, _)| a.name).collect();
        assert_eq!(names, ["kept", "fresh"]);
        assert!(!old.exists(), "the expired artifact's folder is removed");
        assert!(kept.exists() && fresh.exists());
        // the boundary: exactly at its retention it is still there
        let info = ArtifactInfo {
            id: 4,
            name: "edge".to_owned(),
            size: 0,
            files: 0,
            retention_days: 1,
            job: "j".to_owned(),
            created: 1_000,
            digest: String::new(),
        };
        assert!(!expired(&info, 1_000 + day));
        assert!(expired(&info, 1_000 + day + 1));
    }
}
