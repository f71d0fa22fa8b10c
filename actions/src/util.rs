//! Helpers the built-in GitHub actions share: inputs, log lines and `path:` patterns.

use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;
use pipe_runner::executor::OutputSink;
use pipe_runner::run::action::BuiltinCall;

/// A line of the step's log.
pub fn line(out: &mut dyn OutputSink, text: &str) {
    out.write(text.as_bytes());
    out.write(b"\n");
}

/// A `::warning::` annotation (escaped so that it stays one workflow command).
pub fn warning(out: &mut dyn OutputSink, text: &str) {
    let escaped = text
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    line(out, &format!("::warning::{escaped}"));
}

/// An input, trimmed (empty when not given).
pub fn input<'a>(inputs: &'a IndexMap<String, String>, name: &str) -> &'a str {
    inputs.get(name).map(|s| s.trim()).unwrap_or("")
}

/// A multi-line input: one value a line, trimmed, blank lines dropped.
pub fn input_lines(inputs: &IndexMap<String, String>, name: &str) -> Vec<String> {
    input(inputs, name)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A boolean input the way `core.getBooleanInput` reads it (`true`/`True`/`TRUE`, `false`…);
/// `default` when empty.
pub fn input_bool(
    inputs: &IndexMap<String, String>,
    name: &str,
    default: bool,
) -> Result<bool, String> {
    match input(inputs, name) {
        "" => Ok(default),
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        v => Err(format!(
            "input `{name}` does not meet YAML 1.2 \"core schema\" specification: `{v}` (support boolean input list: `true | True | TRUE | false | False | FALSE`)"
        )),
    }
}

/// Warns about inputs the action does not declare (GitHub's runner does the same).
pub fn warn_unexpected(
    out: &mut dyn OutputSink,
    inputs: &IndexMap<String, String>,
    known: &[&str],
    uses: &str,
) {
    let names: Vec<String> = inputs
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| format!("`{k}`"))
        .collect();
    if !names.is_empty() {
        warning(
            out,
            &format!("unexpected input {} for action `{uses}`", names.join(", ")),
        );
    }
}

/// A value of the step's environment.
pub fn env<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Appends Markdown to the step summary (the `GITHUB_STEP_SUMMARY` file the runner reads
/// back after the step).
pub fn append_step_summary(call: &BuiltinCall<'_>, markdown: &[u8]) {
    use std::io::Write;
    if let Some(path) = env(call.env, "GITHUB_STEP_SUMMARY")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = f.write_all(markdown);
    }
}

/// Keeps a report as the run's evidence (`runs/<N>/evidence/<kind>-<job>-<step>.json`,
/// where promotion gates read it). `None` when the run is not recorded.
pub fn write_evidence(
    call: &BuiltinCall<'_>,
    kind: &str,
    json: &[u8],
) -> Option<Result<PathBuf, String>> {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let dir = call.run_dir?.join("evidence");
    let job = env(call.env, "GITHUB_JOB").unwrap_or("job");
    let step = env(call.env, "GITHUB_ACTION").unwrap_or(kind);
    let file = dir.join(format!("{kind}-{}-{}.json", safe(job), safe(step)));
    Some(
        std::fs::create_dir_all(&dir)
            .and_then(|()| pipe_runner::store::write_atomic(&file, json))
            .map(|()| file)
            .map_err(|e| e.to_string()),
    )
}

/// Removes `.` and resolves `..` lexically.
pub fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c.as_os_str()),
        }
    }
    out
}

/// A path of an input made absolute: `~` is the home folder, relative paths are below the
/// workspace.
pub fn resolve(workspace: &Path, env_vars: &[(String, String)], p: &str) -> PathBuf {
    let home = env(env_vars, "HOME")
        .map(str::to_owned)
        .or_else(|| std::env::var("HOME").ok());
    let p = p.trim();
    let full = if p == "~" {
        PathBuf::from(home.unwrap_or_default())
    } else if let (Some(rest), Some(h)) = (p.strip_prefix("~/"), &home) {
        Path::new(h).join(rest)
    } else {
        workspace.join(p)
    };
    normalise(&full)
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Files matched by `path:` patterns (multi-line, globs, `!` exclusions), as `@actions/glob`
/// finds them: a matched folder brings everything below it; symlinks are not followed.
#[derive(Debug, Default)]
pub struct Matched {
    /// Matched files and symlinks (absolute, sorted, unique).
    pub files: Vec<PathBuf>,
    /// The search path of each include pattern: its longest prefix without glob characters.
    pub search_paths: Vec<PathBuf>,
}

/// Expands patterns relative to `workspace`. Without `include_hidden`, files and folders
/// whose name starts with `.` are skipped (upload-artifact's default).
pub fn expand(
    patterns: &[String],
    workspace: &Path,
    env_vars: &[(String, String)],
    include_hidden: bool,
) -> Result<Matched, String> {
    let mut includes = Vec::new();
    let mut excludes = Vec::new();
    for p in patterns {
        let (neg, body) = match p.strip_prefix('!') {
            Some(b) => (true, b.trim()),
            None => (false, p.as_str()),
        };
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let abs = resolve(workspace, env_vars, body);
        let text = abs.to_string_lossy().into_owned();
        let glob = globset::GlobBuilder::new(&text)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("invalid pattern `{body}`: {e}"))?
            .compile_matcher();
        if neg {
            excludes.push(glob);
        } else {
            let mut search = PathBuf::new();
            for c in abs.components() {
                if has_glob(&c.as_os_str().to_string_lossy()) {
                    break;
                }
                search.push(c.as_os_str());
            }
            includes.push((abs, search, glob));
        }
    }
    let excluded = |p: &Path| {
        p.ancestors()
            .any(|a| excludes.iter().any(|g| g.is_match(a)))
    };
    let mut files = Vec::new();
    let mut search_paths = Vec::new();
    for (abs, search, glob) in &includes {
        search_paths.push(search.clone());
        let literal = abs == search;
        let Ok(meta) = std::fs::symlink_metadata(search) else {
            continue;
        };
        if !include_hidden && is_hidden(search) {
            continue;
        }
        if !meta.is_dir() {
            if literal && !excluded(search) {
                files.push(search.clone());
            }
            continue;
        }
        let mut stack = vec![(search.clone(), literal)];
        while let Some((dir, inside)) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if !include_hidden && is_hidden(&p) {
                    continue;
                }
                if excluded(&p) {
                    continue;
                }
                let Ok(ft) = e.file_type() else { continue };
                let hit = inside || glob.is_match(&p);
                if ft.is_dir() {
                    stack.push((p, hit));
                } else if hit {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    files.dedup();
    Ok(Matched {
        files,
        search_paths,
    })
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// The longest common ancestor folder of `paths`.
pub fn common_ancestor(paths: &[PathBuf]) -> PathBuf {
    let mut it = paths.iter();
    let Some(first) = it.next() else {
        return PathBuf::from("/");
    };
    let mut common: Vec<Component<'_>> = first.components().collect();
    for p in it {
        let n = common
            .iter()
            .zip(p.components())
            .take_while(|(a, b)| **a == *b)
            .count();
        common.truncate(n);
    }
    common.iter().map(|c| c.as_os_str()).collect()
}

/// Copies a regular file to `to` in one pass, hashing what it reads, and returns the digest
/// and size of what was written (one read of the source instead of a copy and a second read
/// to hash the copy). The mode is kept; the parent folder must exist.
pub fn copy_hashing(
    from: &Path,
    to: &Path,
    buf: &mut Vec<u8>,
) -> std::io::Result<(pipe_cache::Digest, u64)> {
    use std::io::{Read, Write};
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut src = std::fs::File::open(from)?;
    let meta = src.metadata()?;
    let mode = meta.permissions().mode() & 0o7777;
    let _ = std::fs::remove_file(to);
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(to)?;
    let mut h = pipe_cache::Hasher::new();
    let mut total = 0u64;
    buf.resize(CHUNK.max(buf.len()), 0);
    loop {
        let n = match src.read(&mut buf[..CHUNK]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        total += n as u64;
    }
    // `mode` on open is filtered by the umask; set it exactly as `fs::copy` does.
    dst.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok((h.finish(), total))
}

/// Read size of [`copy_hashing`].
const CHUNK: usize = 1 << 20;

/// Runs `f` on contiguous chunks of `items` on up to 8 threads (file copies and store writes
/// wait on the disk more than they compute) and returns the results in order; the first
/// error wins.
pub fn par_chunks<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&[T]) -> Result<R, String> + Sync,
) -> Result<Vec<R>, String> {
    let n = (items.len() / 64).clamp(1, 8);
    if n == 1 {
        return Ok(vec![f(items)?]);
    }
    let chunk = items.len().div_ceil(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| {
                let f = &f;
                s.spawn(move || f(c))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a worker thread panicked".to_owned()))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_exclusions_and_hidden_files() {
        let t = tempfile::tempdir().expect("tmp");
        let ws = t.path();
        for f in [
            "a/x.txt",
            "a/y.log",
            "a/b/z.txt",
            "a/.h/q.txt",
            "a/.dot",
            "c.txt",
        ] {
            let p = ws.join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, f).expect("write");
        }
        let rel = |m: &Matched| -> Vec<String> {
            m.files
                .iter()
                .map(|f| {
                    f.strip_prefix(ws)
                        .expect("below")
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        };
        let m = expand(&["a".into(), "!a/*.log".into()], ws, &[], false).expect("ok");
        assert_eq!(rel(&m), ["a/b/z.txt", "a/x.txt"]);
        let m = expand(&["a/**/*.txt".into()], ws, &[], true).expect("ok");
        assert_eq!(rel(&m), ["a/.h/q.txt", "a/b/z.txt", "a/x.txt"]);
        assert_eq!(m.search_paths, [ws.join("a")]);
        let m = expand(&["a/*.txt".into(), "c.txt".into()], ws, &[], false).expect("ok");
        assert_eq!(rel(&m), ["a/x.txt", "c.txt"]);
        assert_eq!(common_ancestor(&m.search_paths), ws);
        let m = expand(&["missing/**".into()], ws, &[], false).expect("ok");
        assert!(m.files.is_empty());
    }

    #[test]
    fn par_chunks_keeps_order_and_errors() {
        let v: Vec<u32> = (0..1000).collect();
        let r = par_chunks(&v, |c| Ok(c.to_vec())).expect("ok");
        assert_eq!(r.concat(), v);
        assert!(
            par_chunks(&v, |c| if c.contains(&999) {
                Err("x".to_owned())
            } else {
                Ok(())
            })
            .is_err()
        );
    }

    #[test]
    fn booleans_and_paths() {
        let mut i = IndexMap::new();
        i.insert("a".to_owned(), "TRUE".to_owned());
        i.insert("b".to_owned(), "yes".to_owned());
        assert_eq!(input_bool(&i, "a", false), Ok(true));
        assert_eq!(input_bool(&i, "c", true), Ok(true));
        assert!(input_bool(&i, "b", false).is_err());
        let env = vec![("HOME".to_owned(), "/h".to_owned())];
        assert_eq!(resolve(Path::new("/w"), &env, "~/x"), Path::new("/h/x"));
        assert_eq!(
            resolve(Path::new("/w"), &env, "./a/../b"),
            Path::new("/w/b")
        );
    }
}
