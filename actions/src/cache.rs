//! `actions/cache`, `actions/cache/restore` and `actions/cache/save` (v4.3.0 surface), on the
//! content-addressed store in `$PIPE_CACHE_DIR` (namespace `actions`), and on the remote cache
//! `PIPE_CACHE_REMOTE` names when it is set (`PIPE_CACHE_READ_ONLY=1`: never written).
//!
//! An entry's key is `<version>:<key>`, where the version is the SHA-256 of the `path` lines
//! as written, the compression method and a salt (as `@actions/cache` computes it), so the
//! same key with other paths is another entry. Restoring tries the primary key, then each
//! restore key: an exact match first, then the newest entry whose key starts with it.
//! `cache-hit` is `true` only for an exact (case-insensitive) match of the primary key, and is
//! not set at all on a miss (actions/cache#1466). `actions/cache` saves in its post phase
//! (`post-if: success()`) under the key computed when the step ran, unless that key was hit
//! exactly; entries are immutable (saving an existing key is a warning). Files under the
//! workspace are stored relative to it (entries move with the repository), others by their
//! absolute path. An entry's files are one pack in the store (`pipe_cache::pack`), unless a
//! remote is configured (it stores one blob per file); a damaged pack is a miss with a
//! warning.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use indexmap::IndexMap;
use pipe_cache::pack::Source;
use pipe_cache::{Cache, EntryKey, Lookup, Manifest, StoreOptions};
use pipe_runner::executor::OutputSink;
use pipe_runner::run::action::{BuiltinAction, BuiltinCall, BuiltinResult};
use sha2::{Digest as _, Sha256};

use crate::util::{
    expand, input, input_bool, input_lines, line, par_chunks, warn_unexpected, warning,
};

/// The store namespace of `actions/cache` entries.
pub const NAMESPACE: &str = "actions";
/// `@actions/cache` limits.
const MAX_KEY_LEN: usize = 512;
const MAX_KEYS: usize = 10;
/// The compression method and salt `@actions/cache` puts into the version on Linux.
const VERSION_PARTS: &[&str] = &["zstd-without-long", "1.0"];

const STATE_PRIMARY: &str = "CACHE_KEY";
const STATE_MATCHED: &str = "CACHE_RESULT";

/// Which of the three actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `actions/cache`: restore now, save in the post phase.
    Both,
    /// `actions/cache/restore`.
    Restore,
    /// `actions/cache/save`.
    Save,
}

/// `actions/cache` and its `restore`/`save` sub-actions.
pub struct CacheAction(pub Mode);

fn known_inputs(mode: Mode) -> &'static [&'static str] {
    match mode {
        Mode::Both => &[
            "path",
            "key",
            "restore-keys",
            "upload-chunk-size",
            "enablecrossosarchive",
            "fail-on-cache-miss",
            "lookup-only",
            "save-always",
        ],
        Mode::Restore => &[
            "path",
            "key",
            "restore-keys",
            "enablecrossosarchive",
            "fail-on-cache-miss",
            "lookup-only",
        ],
        Mode::Save => &["path", "key", "upload-chunk-size", "enablecrossosarchive"],
    }
}

/// The cache version of a `path` list: the SHA-256 of the lines, the compression method and
/// the salt, joined by `|`.
pub fn version(paths: &[String]) -> String {
    let mut parts: Vec<&str> = paths.iter().map(String::as_str).collect();
    parts.extend(VERSION_PARTS);
    hex::encode(Sha256::digest(parts.join("|").as_bytes()))
}

/// Checks keys the way `@actions/cache` does (at most 10, 512 characters, no commas).
pub fn validate_keys(keys: &[String]) -> Result<(), String> {
    if keys.len() > MAX_KEYS {
        return Err(format!(
            "key validation error: keys are limited to a maximum of {MAX_KEYS}"
        ));
    }
    for k in keys {
        if k.chars().count() > MAX_KEY_LEN {
            return Err(format!(
                "key validation error: `{k}` cannot be larger than {MAX_KEY_LEN} characters"
            ));
        }
        if k.contains(',') {
            return Err(format!("key validation error: `{k}` cannot contain commas"));
        }
    }
    Ok(())
}

fn open_cache() -> Result<Cache, String> {
    let env = pipe_runner::dirs::process_env;
    let dir = pipe_runner::dirs::cache_root(&env).map_err(|e| e.to_string())?;
    let opts = StoreOptions::from_env(&env)?;
    let local = pipe_cache::LocalStore::open(&dir, opts).map_err(|e| e.to_string())?;
    let mut cache = Cache::new(local);
    // A remote (`pipe agent` gives each job the server's cache this way): exact keys are
    // looked up and saved there too; restore-key prefixes search the local store only.
    if let Some(url) = env("PIPE_CACHE_REMOTE").filter(|u| !u.is_empty()) {
        let mut rc = pipe_cache::remote::RemoteConfig::new(&url);
        rc.token = env("PIPE_CACHE_TOKEN").filter(|t| !t.is_empty());
        let mode = if env("PIPE_CACHE_READ_ONLY").is_some_and(|v| v == "1" || v == "true") {
            pipe_cache::RemoteMode::ReadOnly
        } else {
            pipe_cache::RemoteMode::ReadWrite
        };
        match pipe_cache::remote::open(&rc) {
            Ok(r) => cache = cache.with_remote(r, mode),
            Err(e) => return Err(format!("`PIPE_CACHE_REMOTE`: {e}")),
        }
    }
    Ok(cache)
}

/// Where a stored path goes back: `w/…` below the workspace, `a/…` from `/`.
fn split(m: &Manifest, prefix: &str) -> Manifest {
    let mut part = m.clone();
    part.files = m
        .files
        .iter()
        .filter_map(|f| {
            f.path.strip_prefix(prefix).map(|p| {
                let mut f = f.clone();
                f.path = p.to_owned();
                f
            })
        })
        .collect();
    part
}

struct Restored {
    matched: Option<String>,
}

/// Looks up (and unless `lookup_only` restores) the first key that matches.
fn restore(
    cache: &Cache,
    workspace: &Path,
    paths: &[String],
    keys: &[String],
    lookup_only: bool,
    out: &mut dyn OutputSink,
) -> Restored {
    let v = version(paths);
    for k in keys {
        let full = format!("{v}:{k}");
        let hit = match cache.lookup(&EntryKey::new(NAMESPACE, &full)) {
            Lookup::Hit { manifest, .. } => Some(manifest),
            Lookup::Miss { .. } => match cache.lookup_prefix(NAMESPACE, &full) {
                Lookup::Hit { manifest, .. } => Some(manifest),
                Lookup::Miss { .. } => None,
            },
        };
        for w in cache.take_warnings() {
            warning(out, &w);
        }
        let Some(m) = hit else { continue };
        let matched = m
            .key
            .strip_prefix(&format!("{v}:"))
            .unwrap_or(&m.key)
            .to_owned();
        if !lookup_only {
            let size: u64 = m.files.iter().map(file_size).sum();
            line(out, &format!("Cache Size: ~{} MB ({size} B)", mib(size)));
            for (prefix, root) in [("w/", workspace.to_path_buf()), ("a/", PathBuf::from("/"))] {
                let part = split(&m, prefix);
                if part.files.is_empty() {
                    continue;
                }
                if part.pack.is_some() {
                    // One pack: the store reads it on several threads and verifies every
                    // file before any is moved into place.
                    if let Err(e) = cache.local().restore(&part, &root) {
                        if e.is_miss() {
                            let _ = cache
                                .local()
                                .remove_entry(&EntryKey::new(NAMESPACE, &m.key));
                        }
                        warning(out, &format!("failed to restore: {e}"));
                        return Restored { matched: None };
                    }
                    continue;
                }
                // Parts are restored on several threads; each part is verified before any of
                // its files is moved into place.
                let local = cache.local();
                let r = par_chunks(&part.files, |chunk| {
                    let mut sub = part.clone();
                    sub.files = chunk.to_vec();
                    local.restore(&sub, &root).map_err(|e| e.to_string())
                });
                if let Err(e) = r {
                    warning(out, &format!("failed to restore: {e}"));
                    return Restored { matched: None };
                }
            }
        }
        return Restored {
            matched: Some(matched),
        };
    }
    Restored { matched: None }
}

/// Whole MiB, rounded (as the toolkit logs them).
fn mib(size: u64) -> u64 {
    (size + 512 * 1024) / (1024 * 1024)
}

fn file_size(f: &pipe_cache::manifest::FileEntry) -> u64 {
    match &f.kind {
        pipe_cache::manifest::FileKind::File { blob, .. } => blob.size,
        _ => 0,
    }
}

/// Saves the files of `paths` under `key`; problems are warnings (as in `@actions/cache`).
/// Returns whether an entry was saved.
fn save(
    cache: &Cache,
    workspace: &Path,
    env: &[(String, String)],
    paths: &[String],
    key: &str,
    out: &mut dyn OutputSink,
) -> bool {
    if let Err(e) = validate_keys(&[key.to_owned()]) {
        warning(out, &e);
        return false;
    }
    let full = format!("{}:{key}", version(paths));
    let entry = EntryKey::new(NAMESPACE, &full);
    let matched = match expand(paths, workspace, env, true) {
        Ok(m) => m,
        Err(e) => {
            warning(out, &e);
            return false;
        }
    };
    if matched.files.is_empty() {
        warning(
            out,
            "path validation error: path(s) specified in the action for caching do(es) not exist, hence no cache is being saved",
        );
        return false;
    }
    if let Ok(Some(_)) = cache.local().get_entry(&entry) {
        warning(
            out,
            &format!(
                "failed to save: unable to reserve cache with key {key}, another job may be creating this cache"
            ),
        );
        return false;
    }
    let local = cache.local();
    if !cache.has_remote() {
        // One pack file for the whole entry (see `pipe_cache::pack`): a remote stores blobs
        // by content digest, so entries for a remote keep one blob per file.
        let sources: Vec<Source> = matched
            .files
            .iter()
            .map(|f| match f.strip_prefix(workspace) {
                Ok(rel) => Source {
                    path: f.clone(),
                    rel: format!("w/{}", rel.to_string_lossy()),
                },
                Err(_) => Source {
                    path: f.clone(),
                    rel: format!("a/{}", f.to_string_lossy().trim_start_matches('/')),
                },
            })
            .collect();
        let built = local.builder(&entry).and_then(|mut b| {
            b.add_packed(&sources, pipe_cache::pack::threads())?;
            Ok(b.finish())
        });
        return match built {
            Ok(m) => finish_save(cache, &m, key, out),
            Err(e) => {
                warning(out, &format!("failed to save: {e}"));
                false
            }
        };
    }
    let mut inside = Vec::new();
    let mut outside = Vec::new();
    for f in &matched.files {
        match f.strip_prefix(workspace) {
            Ok(rel) => inside.push(rel.to_string_lossy().into_owned()),
            Err(_) => outside.push(f.to_string_lossy().trim_start_matches('/').to_owned()),
        }
    }
    let build = |root: &Path, rels: &[String], prefix: &str| -> Result<Vec<_>, String> {
        let parts = par_chunks(rels, |chunk| {
            let mut b = local.builder(&entry).map_err(|e| e.to_string())?;
            for r in chunk {
                b.add_path(root, r).map_err(|e| e.to_string())?;
            }
            Ok(b.finish().files)
        })?;
        Ok(parts
            .into_iter()
            .flatten()
            .map(|mut f| {
                f.path = format!("{prefix}{}", f.path);
                f
            })
            .collect())
    };
    let files = build(workspace, &inside, "w/").and_then(|mut a| {
        a.extend(build(Path::new("/"), &outside, "a/")?);
        Ok(a)
    });
    let mut files = match files {
        Ok(f) => f,
        Err(e) => {
            warning(out, &format!("failed to save: {e}"));
            return false;
        }
    };
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut m = Manifest::new(NAMESPACE, &full);
    m.files = files;
    finish_save(cache, &m, key, out)
}

/// Writes the entry's manifest and reports the size.
fn finish_save(cache: &Cache, m: &Manifest, key: &str, out: &mut dyn OutputSink) -> bool {
    let size: u64 = m.files.iter().map(file_size).sum();
    let outcome = cache.save(m);
    for w in outcome.warnings {
        warning(out, &w);
    }
    if outcome.local {
        line(out, &format!("Cache Size: ~{} MB ({size} B)", mib(size)));
        line(out, &format!("Cache saved with key: {key}"));
    }
    outcome.local
}

fn required<'a>(inputs: &'a IndexMap<String, String>, name: &str) -> Result<&'a str, String> {
    match input(inputs, name) {
        "" => Err(format!("input required and not supplied: {name}")),
        v => Ok(v),
    }
}

#[async_trait]
impl BuiltinAction for CacheAction {
    async fn run(&self, call: BuiltinCall<'_>, out: &mut dyn OutputSink) -> BuiltinResult {
        let i = call.inputs;
        warn_unexpected(out, i, known_inputs(self.0), call.uses);
        let key = required(i, "key")?.to_owned();
        let paths = input_lines(i, "path");
        if paths.is_empty() {
            return Err("input required and not supplied: path".to_owned());
        }
        input_bool(i, "enablecrossosarchive", false)?;
        let mut outputs = IndexMap::new();
        let cache = open_cache()?;
        let workspace = call.workspace.to_path_buf();
        if self.0 == Mode::Save {
            validate_keys(std::slice::from_ref(&key))?;
            let env = call.env.to_vec();
            let saved =
                tokio::task::block_in_place(|| save(&cache, &workspace, &env, &paths, &key, out));
            if !saved {
                warning(out, "cache save failed");
            }
            return Ok(outputs);
        }
        let lookup_only = input_bool(i, "lookup-only", false)?;
        let fail_on_miss = input_bool(i, "fail-on-cache-miss", false)?;
        let mut keys = vec![key.clone()];
        keys.extend(input_lines(i, "restore-keys"));
        // Recorded before validation, as `@actions/cache` does: the post step then warns
        // about the invalid key instead of saving.
        call.state.insert(STATE_PRIMARY.to_owned(), key.clone());
        validate_keys(&keys)?;
        if self.0 == Mode::Restore {
            outputs.insert("cache-primary-key".to_owned(), key.clone());
        }
        let r = tokio::task::block_in_place(|| {
            restore(&cache, &workspace, &paths, &keys, lookup_only, out)
        });
        let Some(matched) = r.matched else {
            if fail_on_miss {
                return Err(format!(
                    "failed to restore cache entry: exiting as `fail-on-cache-miss` is set. input key: {key}"
                ));
            }
            line(
                out,
                &format!("Cache not found for input keys: {}", keys.join(", ")),
            );
            return Ok(outputs);
        };
        call.state.insert(STATE_MATCHED.to_owned(), matched.clone());
        let exact = matched.to_lowercase() == key.to_lowercase();
        outputs.insert("cache-hit".to_owned(), exact.to_string());
        if self.0 == Mode::Restore {
            outputs.insert("cache-matched-key".to_owned(), matched.clone());
        }
        if lookup_only {
            line(
                out,
                &format!("Cache found and can be restored from key: {matched}"),
            );
        } else {
            line(out, &format!("Cache restored from key: {matched}"));
        }
        Ok(outputs)
    }

    fn post_if(&self) -> Option<&'static str> {
        (self.0 == Mode::Both).then_some("success()")
    }

    async fn post(&self, call: BuiltinCall<'_>, out: &mut dyn OutputSink) -> Result<(), String> {
        let Some(key) = call.state.get(STATE_PRIMARY).cloned() else {
            // The main step failed before it read its inputs.
            warning(out, "key is not specified");
            return Ok(());
        };
        if let Some(m) = call.state.get(STATE_MATCHED)
            && m.to_lowercase() == key.to_lowercase()
        {
            line(
                out,
                &format!("Cache hit occurred on the primary key {key}, not saving cache."),
            );
            return Ok(());
        }
        let paths = input_lines(call.inputs, "path");
        let cache = match open_cache() {
            Ok(c) => c,
            Err(e) => {
                warning(out, &format!("failed to save: {e}"));
                return Ok(());
            }
        };
        let workspace = call.workspace.to_path_buf();
        let env = call.env.to_vec();
        tokio::task::block_in_place(|| save(&cache, &workspace, &env, &paths, &key, out));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn cache(dir: &Path) -> Cache {
        Cache::new(pipe_cache::LocalStore::open(dir, StoreOptions::default()).expect("open"))
    }

    fn workspace(dir: &Path) -> PathBuf {
        let ws = dir.join("ws");
        std::fs::create_dir_all(ws.join("data/sub")).expect("mkdir");
        for i in 0..50 {
            std::fs::write(ws.join(format!("data/sub/f{i}")), vec![i as u8; 1000 + i]).expect("w");
        }
        std::fs::write(ws.join("data/tool"), "#!/bin/sh\n").expect("w");
        std::fs::set_permissions(ws.join("data/tool"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::os::unix::fs::symlink("tool", ws.join("data/link")).expect("ln");
        ws
    }

    fn text(out: &[u8]) -> String {
        String::from_utf8_lossy(out).into_owned()
    }

    fn paths() -> Vec<String> {
        vec!["data".to_owned()]
    }

    fn check_restored(ws: &Path) {
        for i in 0..50 {
            let got = std::fs::read(ws.join(format!("data/sub/f{i}"))).expect("restored");
            assert_eq!(got, vec![i as u8; 1000 + i]);
        }
        let mode = std::fs::metadata(ws.join("data/tool"))
            .expect("tool")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            std::fs::read_link(ws.join("data/link")).expect("link"),
            Path::new("tool")
        );
    }

    fn only_pack(dir: &Path) -> PathBuf {
        let packs = dir.join("cache/cas-v1/packs");
        let mut found = Vec::new();
        for fan in std::fs::read_dir(&packs).expect("packs").flatten() {
            for f in std::fs::read_dir(fan.path()).expect("fan").flatten() {
                found.push(f.path());
            }
        }
        assert_eq!(found.len(), 1, "{found:?}");
        found.remove(0)
    }

    #[test]
    fn save_packs_the_entry_and_restore_unpacks_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let ws = workspace(dir.path());
        let c = cache(&dir.path().join("cache"));
        let mut out = Vec::new();
        assert!(
            save(&c, &ws, &[], &paths(), "k", &mut out),
            "{}",
            text(&out)
        );
        assert!(
            text(&out).contains("Cache saved with key: k"),
            "{}",
            text(&out)
        );
        only_pack(dir.path());
        std::fs::remove_dir_all(ws.join("data")).expect("rm");
        let r = restore(&c, &ws, &paths(), &["k".to_owned()], false, &mut out);
        assert_eq!(r.matched.as_deref(), Some("k"), "{}", text(&out));
        check_restored(&ws);
        // Saving an existing key is refused, as before.
        let mut out = Vec::new();
        assert!(!save(&c, &ws, &[], &paths(), "k", &mut out));
        assert!(
            text(&out).contains("another job may be creating"),
            "{}",
            text(&out)
        );
    }

    #[test]
    fn entries_of_one_blob_per_file_still_restore() {
        let dir = tempfile::tempdir().expect("tmp");
        let ws = workspace(dir.path());
        let c = cache(&dir.path().join("cache"));
        // The format before packs (and the one a remote gets): one CAS blob per file.
        let full = format!("{}:old", version(&paths()));
        let mut b = c
            .local()
            .builder(&EntryKey::new(NAMESPACE, &full))
            .expect("builder");
        b.add_path(&ws, "data").expect("add");
        let mut m = b.finish();
        for f in &mut m.files {
            f.path = format!("w/{}", f.path);
        }
        assert!(m.pack.is_none());
        assert!(c.save(&m).local);
        std::fs::remove_dir_all(ws.join("data")).expect("rm");
        let mut out = Vec::new();
        let r = restore(&c, &ws, &paths(), &["old".to_owned()], false, &mut out);
        assert_eq!(r.matched.as_deref(), Some("old"), "{}", text(&out));
        check_restored(&ws);
    }

    #[test]
    fn truncated_pack_is_a_miss_with_a_warning_and_is_saved_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let ws = workspace(dir.path());
        let c = cache(&dir.path().join("cache"));
        let mut out = Vec::new();
        assert!(save(&c, &ws, &[], &paths(), "k", &mut out));
        let pack = only_pack(dir.path());
        let len = std::fs::metadata(&pack).expect("meta").len();
        std::fs::File::options()
            .write(true)
            .open(&pack)
            .expect("open")
            .set_len(len - 10)
            .expect("truncate");
        std::fs::remove_dir_all(ws.join("data")).expect("rm");
        let mut out = Vec::new();
        let r = restore(&c, &ws, &paths(), &["k".to_owned()], false, &mut out);
        assert!(r.matched.is_none(), "{}", text(&out));
        assert!(
            text(&out).contains("::warning::") && text(&out).contains("damaged"),
            "{}",
            text(&out)
        );
        assert!(!ws.join("data").exists());
        // The damaged entry is gone, so the post step can save the key again.
        let ws = workspace(dir.path());
        let mut out = Vec::new();
        assert!(
            save(&c, &ws, &[], &paths(), "k", &mut out),
            "{}",
            text(&out)
        );
        std::fs::remove_dir_all(ws.join("data")).expect("rm");
        let r = restore(&c, &ws, &paths(), &["k".to_owned()], false, &mut out);
        assert_eq!(r.matched.as_deref(), Some("k"), "{}", text(&out));
        check_restored(&ws);
    }

    #[test]
    fn corrupt_pack_is_a_miss_with_a_warning() {
        let dir = tempfile::tempdir().expect("tmp");
        let ws = workspace(dir.path());
        let c = cache(&dir.path().join("cache"));
        let mut out = Vec::new();
        assert!(save(&c, &ws, &[], &paths(), "k", &mut out));
        let pack = only_pack(dir.path());
        let mut bytes = std::fs::read(&pack).expect("read");
        bytes[500] ^= 0xff;
        std::fs::write(&pack, &bytes).expect("write");
        std::fs::remove_dir_all(ws.join("data")).expect("rm");
        let mut out = Vec::new();
        let r = restore(&c, &ws, &paths(), &["k".to_owned()], false, &mut out);
        assert!(r.matched.is_none(), "{}", text(&out));
        assert!(
            text(&out).contains("::warning::failed to restore"),
            "{}",
            text(&out)
        );
        assert!(
            !ws.join("data/sub/f0").exists() && !ws.join("data/tool").exists(),
            "nothing is restored from a corrupt pack"
        );
        let mut out = Vec::new();
        let r = restore(&c, &ws, &paths(), &["k".to_owned()], true, &mut out);
        assert!(r.matched.is_none(), "the entry is gone: {}", text(&out));
    }

    #[test]
    fn concurrent_saves_of_one_key() {
        let dir = tempfile::tempdir().expect("tmp");
        let ws = workspace(dir.path());
        let cdir = dir.path().join("cache");
        let saved: Vec<bool> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    let (ws, cdir) = (&ws, &cdir);
                    sc.spawn(move || {
                        let mut out = Vec::new();
                        save(&cache(cdir), ws, &[], &paths(), "same", &mut out)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(false)).collect()
        });
        assert!(saved.iter().any(|s| *s), "{saved:?}");
        let c = cache(&cdir);
        std::fs::remove_dir_all(ws.join("data")).expect("rm");
        let mut out = Vec::new();
        let r = restore(&c, &ws, &paths(), &["same".to_owned()], false, &mut out);
        assert_eq!(r.matched.as_deref(), Some("same"), "{}", text(&out));
        check_restored(&ws);
        assert!(c.local().verify(false).expect("verify").problems.is_empty());
    }

    #[test]
    fn version_depends_on_paths_and_their_order() {
        let a = version(&["a".into(), "b".into()]);
        assert_eq!(a.len(), 64);
        assert_ne!(a, version(&["b".into(), "a".into()]));
        assert_eq!(a, version(&["a".into(), "b".into()]));
    }

    #[test]
    fn key_limits() {
        assert!(validate_keys(&["a".into()]).is_ok());
        assert!(validate_keys(&["x".repeat(512)]).is_ok());
        let e = validate_keys(&["x".repeat(513)]).err().unwrap_or_default();
        assert!(e.contains("512"), "{e}");
        let e = validate_keys(&["a,b".into()]).err().unwrap_or_default();
        assert!(e.contains("commas"), "{e}");
        let many: Vec<String> = (0..11).map(|i| i.to_string()).collect();
        assert!(validate_keys(&many).is_err());
    }
}
