//! `pipe cache ls|show|gc|verify|clear`, plus two hidden debugging aids: `pipe cache hash
//! PATH…` (drives the tree hasher, used by `bench/cache/`) and `pipe cache torture` (writes
//! and checks deterministic entries, used by the fault tests).
//!
//! The store lives in `$PIPE_CACHE_DIR` (default `$XDG_CACHE_HOME/pipe`). Data goes to
//! stdout, messages to stderr. A store that cannot be opened or read is an infrastructure
//! error (exit 3); `verify` exits 3 when it finds corruption.

use std::path::{Path, PathBuf};

use pipe_cache::hash::TreeHasher;
use pipe_cache::store::{GcLimits, LocalStore, StoreOptions, parse_age, parse_size};
use pipe_cache::{Digest, EntryKey, Manifest};
use pipe_runner::exit;

use crate::args::{CacheArgs, CacheCommand, Cli};
use crate::output;

/// Namespace used by `pipe cache torture`.
const TORTURE_NS: &str = "torture";

/// Runs the command and returns its exit code.
pub fn run(cli: &Cli, args: &CacheArgs) -> u8 {
    let dir = match pipe_runner::dirs::cache_root(&pipe_runner::dirs::process_env) {
        Ok(d) => d,
        Err(e) => {
            super::error(cli, &e.to_string(), None);
            return exit::USAGE;
        }
    };
    let opts = match store_options(cli) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let store = match LocalStore::open(&dir, opts) {
        Ok(s) => s,
        Err(e) => {
            super::error(cli, &e.to_string(), None);
            return exit::INFRA;
        }
    };
    let r = match &args.command {
        CacheCommand::Ls { json, namespace } => ls(&store, *json, namespace.as_deref()),
        CacheCommand::Show { key, json } => show(cli, &store, key, *json),
        CacheCommand::Gc {
            max_size,
            max_age,
            json,
        } => gc(cli, &store, max_size.as_deref(), max_age.as_deref(), *json),
        CacheCommand::Verify { repair, json } => verify(cli, &store, *repair, *json),
        CacheCommand::Clear => clear(cli, &store),
        CacheCommand::Hash {
            paths,
            json,
            no_stat_cache,
            no_git,
            summary,
        } => hash(cli, &store, paths, *json, *no_stat_cache, *no_git, *summary),
        CacheCommand::Torture {
            count,
            seed,
            check,
            shape,
        } => torture(cli, &store, *count, *seed, *check, shape),
    };
    match r {
        Ok(code) => code,
        Err(message) => {
            super::error(cli, &message, None);
            exit::INFRA
        }
    }
}

/// Limits from `PIPE_CACHE_MAX_SIZE` / `PIPE_CACHE_MAX_AGE` over the defaults.
fn store_options(cli: &Cli) -> Result<StoreOptions, u8> {
    StoreOptions::from_env(&pipe_runner::dirs::process_env).map_err(|message| {
        super::error(
            cli,
            &message,
            Some("e.g. `PIPE_CACHE_MAX_SIZE=10G`, `PIPE_CACHE_MAX_AGE=14d`"),
        );
        exit::USAGE
    })
}

fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn print(text: &str) -> Result<u8, String> {
    // A closed pipe on stdout is not an error (decisions.md).
    let _ = output::stdout_write(text.as_bytes());
    Ok(exit::SUCCESS)
}

fn json<T: serde::Serialize>(v: &T) -> Result<u8, String> {
    let mut s = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    s.push('\n');
    print(&s)
}

fn ls(store: &LocalStore, as_json: bool, namespace: Option<&str>) -> Result<u8, String> {
    let mut entries = store.entries().map_err(|e| e.to_string())?;
    if let Some(ns) = namespace {
        entries.retain(|e| e.namespace == ns);
    }
    if as_json {
        return json(&entries);
    }
    let mut out = String::new();
    for e in &entries {
        out.push_str(&format!(
            "{:<8} {:>10} {:>5} {}  {}\n",
            e.namespace,
            human_size(e.size),
            e.files,
            age_text(e.last_used),
            e.key
        ));
    }
    let total: u64 = entries.iter().map(|e| e.size).sum();
    output::stderr_write(
        format!(
            "{} entr{} ({}) in `{}`\n",
            entries.len(),
            if entries.len() == 1 { "y" } else { "ies" },
            human_size(total),
            store.root().display()
        )
        .as_bytes(),
    );
    print(&out)
}

fn age_text(last_used: u64) -> String {
    let now = pipe_cache::fsutil::unix_secs(std::time::SystemTime::now());
    let d = now.saturating_sub(last_used);
    let t = if d < 120 {
        format!("{d}s")
    } else if d < 7200 {
        format!("{}m", d / 60)
    } else if d < 172_800 {
        format!("{}h", d / 3600)
    } else {
        format!("{}d", d / 86400)
    };
    format!("{t:>4} ago")
}

fn show(cli: &Cli, store: &LocalStore, key: &str, as_json: bool) -> Result<u8, String> {
    let found = store.find_any(key).map_err(|e| e.to_string())?;
    let Some((m, path)) = found.into_iter().next() else {
        super::error(
            cli,
            &format!("no cache entry matches `{key}`"),
            Some("`pipe cache ls` lists the keys"),
        );
        return Ok(exit::USAGE);
    };
    if as_json {
        #[derive(serde::Serialize)]
        struct Shown<'a> {
            path: &'a Path,
            id: String,
            #[serde(flatten)]
            manifest: &'a Manifest,
        }
        return json(&Shown {
            path: &path,
            id: EntryKey::new(&m.namespace, &m.key).digest().to_string(),
            manifest: &m,
        });
    }
    let mut out = format!(
        "namespace  {}\nkey        {}\nid         {}\ncreated    {} ms\nfile       {}\n",
        m.namespace,
        m.key,
        EntryKey::new(&m.namespace, &m.key).digest(),
        m.created_ms,
        path.display()
    );
    out.push_str(&format!("metadata   {} bytes\n", m.metadata.len()));
    if let Some(p) = &m.pack {
        out.push_str(&format!("pack       {} {}\n", human_size(p.size), p.id));
    }
    for a in &m.attachments {
        out.push_str(&format!(
            "attached   {} {} {}{}\n",
            a.name,
            human_size(a.blob.size),
            a.blob.digest,
            if a.blob.inline.is_some() {
                " (inline)"
            } else {
                ""
            }
        ));
    }
    for f in &m.files {
        match &f.kind {
            pipe_cache::FileKind::File { mode, blob, .. } => out.push_str(&format!(
                "file       {:o} {:>10} {} {}{}\n",
                mode,
                human_size(blob.size),
                blob.digest,
                f.path,
                if blob.inline.is_some() {
                    " (inline)"
                } else {
                    ""
                }
            )),
            pipe_cache::FileKind::Symlink { target } => {
                out.push_str(&format!("link       {} -> {target}\n", f.path));
            }
            pipe_cache::FileKind::Dir => out.push_str(&format!("dir        {}/\n", f.path)),
        }
    }
    print(&out)
}

fn gc(
    cli: &Cli,
    store: &LocalStore,
    max_size: Option<&str>,
    max_age: Option<&str>,
    as_json: bool,
) -> Result<u8, String> {
    let mut limits = GcLimits {
        max_size: store.options().max_size,
        max_age: store.options().max_age,
    };
    if let Some(s) = max_size {
        match parse_size(s) {
            Some(n) => limits.max_size = n,
            None => {
                super::error(
                    cli,
                    &format!("`--max-size {s}` is not a size"),
                    Some("e.g. `10G`, `500M`"),
                );
                return Ok(exit::USAGE);
            }
        }
    }
    if let Some(s) = max_age {
        match parse_age(s) {
            Some(d) => limits.max_age = d,
            None => {
                super::error(
                    cli,
                    &format!("`--max-age {s}` is not a duration"),
                    Some("e.g. `14d`, `12h`"),
                );
                return Ok(exit::USAGE);
            }
        }
    }
    let r = store.gc(limits).map_err(|e| e.to_string())?;
    if as_json {
        return json(&r);
    }
    output::stderr_write(
        format!(
            "removed {} entries, {} blobs and {} temp files ({}); kept {} entries ({})\n",
            r.entries_removed,
            r.blobs_removed,
            r.temp_removed,
            human_size(r.bytes_freed),
            r.entries_kept,
            human_size(r.bytes_kept)
        )
        .as_bytes(),
    );
    Ok(exit::SUCCESS)
}

fn verify(cli: &Cli, store: &LocalStore, repair: bool, as_json: bool) -> Result<u8, String> {
    let r = store.verify(repair).map_err(|e| e.to_string())?;
    let code = if r.problems.is_empty() || repair {
        exit::SUCCESS
    } else {
        exit::INFRA
    };
    if as_json {
        json(&r)?;
        return Ok(code);
    }
    let mut out = String::new();
    for p in &r.problems {
        out.push_str(&format!("{}: {}\n", p.path.display(), p.message));
    }
    let _ = output::stdout_write(out.as_bytes());
    let summary = format!(
        "{} entries{} and {} ok, {} problem{}{}, {} unfinished write{}",
        r.entries_ok,
        if r.packs_ok > 0 {
            format!(", {} blobs", r.blobs_ok)
        } else {
            String::new()
        },
        if r.packs_ok > 0 {
            format!("{} packs", r.packs_ok)
        } else {
            format!("{} blobs", r.blobs_ok)
        },
        r.problems.len(),
        if r.problems.len() == 1 { "" } else { "s" },
        if repair && !r.problems.is_empty() {
            " (removed)"
        } else {
            ""
        },
        r.temp_files,
        if r.temp_files == 1 { "" } else { "s" },
    );
    if code == exit::SUCCESS {
        output::stderr_write(format!("{summary}\n").as_bytes());
    } else {
        super::error(
            cli,
            &summary,
            Some("`pipe cache verify --repair` removes the corrupt files"),
        );
    }
    Ok(code)
}

fn clear(cli: &Cli, store: &LocalStore) -> Result<u8, String> {
    let freed = store.clear().map_err(|e| e.to_string())?;
    if !cli.globals.quiet {
        output::stderr_write(
            format!(
                "cleared `{}` ({})\n",
                store.root().display(),
                human_size(freed)
            )
            .as_bytes(),
        );
    }
    Ok(exit::SUCCESS)
}

fn hash(
    cli: &Cli,
    store: &LocalStore,
    paths: &[PathBuf],
    as_json: bool,
    no_stat_cache: bool,
    no_git: bool,
    quiet_files: bool,
) -> Result<u8, String> {
    let mut out = String::new();
    let mut snapshots = Vec::new();
    for p in paths {
        let meta = match std::fs::metadata(p) {
            Ok(m) => m,
            Err(e) => {
                super::error(
                    cli,
                    &format!("cannot read `{}`: {}", p.display(), super::io_reason(&e)),
                    None,
                );
                return Ok(exit::USAGE);
            }
        };
        if meta.is_file() {
            let (d, _) = pipe_cache::digest::hash_file(p)
                .map_err(|e| format!("cannot hash `{}`: {e}", p.display()))?;
            out.push_str(&format!("{}  {}\n", d.hex(), p.display()));
            continue;
        }
        let mut h = TreeHasher::new(p).git(!no_git);
        if !no_stat_cache {
            h = h.stat_cache(&store.stat_dir());
        }
        let snap = h.hash().map_err(|e| e.to_string())?;
        let s = &snap.stats;
        output::stderr_write(
            format!(
                "{}: {} files, {} from the stat cache, {} via git, {} hashed ({}), {} racy\n",
                p.display(),
                s.files,
                s.stat_hits,
                s.git_hits,
                s.hashed,
                human_size(s.bytes_hashed),
                s.racy
            )
            .as_bytes(),
        );
        if as_json {
            snapshots.push(serde_json::json!({
                "path": p,
                "digest": snap.digest(),
                "stats": snap.stats,
                "files": if quiet_files { serde_json::Value::Null } else { serde_json::to_value(&snap.files).map_err(|e| e.to_string())? },
            }));
            continue;
        }
        if !quiet_files {
            for f in &snap.files {
                out.push_str(&format!("{}  {:o}  {}\n", f.digest.hex(), f.mode, f.path));
            }
        }
        out.push_str(&format!("{}  {}/\n", snap.digest().hex(), p.display()));
    }
    if as_json {
        return json(&snapshots);
    }
    print(&out)
}

/// Deterministic content for torture entry `i`, derived from the key so `--check` can tell
/// a wrong hit from a right one. Shapes: `mixed` (100 B and 300 B inline, 40 KB in the CAS),
/// `big` (adds a 1 MiB blob), `step` (one 5-byte output and a 3-line log, like a small build
/// step of performance.md §C).
fn torture_content(seed: u64, i: u64, shape: &str) -> Vec<Vec<u8>> {
    let sizes: &[usize] = match shape {
        "big" => &[100, 40_000, 1 << 20],
        "step" => &[5],
        _ => &[100, 40_000, 300],
    };
    sizes
        .iter()
        .enumerate()
        .map(|(j, &n)| {
            let stamp = Digest::of(format!("{seed}/{i}/{j}").as_bytes());
            stamp.as_bytes().iter().copied().cycle().take(n).collect()
        })
        .collect()
}

fn torture(
    cli: &Cli,
    store: &LocalStore,
    count: u64,
    seed: u64,
    check: bool,
    shape: &str,
) -> Result<u8, String> {
    if !matches!(shape, "mixed" | "big" | "step") {
        super::error(
            cli,
            &format!("unknown shape `{shape}`"),
            Some("use `mixed`, `big` or `step`"),
        );
        return Ok(exit::USAGE);
    }
    if check {
        let tmp = std::env::temp_dir().join(pipe_cache::fsutil::unique_name("pipe-torture-"));
        let mut hits = 0;
        let mut wrong = 0;
        for e in store.entries().map_err(|e| e.to_string())? {
            if e.namespace != TORTURE_NS {
                continue;
            }
            let Some((s, i)) = e
                .key
                .split_once('/')
                .and_then(|(s, i)| Some((s.parse().ok()?, i.parse().ok()?)))
            else {
                continue;
            };
            let key = EntryKey::new(TORTURE_NS, &e.key);
            let Some(m) = store.get_entry(&key).map_err(|e| e.to_string())? else {
                continue;
            };
            let dest = tmp.join(&e.key);
            match store.restore(&m, &dest) {
                Ok(_) => {}
                Err(err) if err.is_miss() => continue,
                Err(err) => return Err(err.to_string()),
            }
            hits += 1;
            let shape = String::from_utf8_lossy(&m.metadata).into_owned();
            let want = torture_content(s, i, &shape);
            for (j, w) in want.iter().enumerate() {
                let got = std::fs::read(dest.join(format!("f{j}"))).unwrap_or_default();
                if got != *w {
                    wrong += 1;
                    super::error(
                        cli,
                        &format!("entry `{}` restored wrong content for `f{j}`", e.key),
                        None,
                    );
                }
            }
        }
        let _ = std::fs::remove_dir_all(&tmp);
        output::stderr_write(format!("{hits} hits, {wrong} wrong files\n").as_bytes());
        return Ok(if wrong == 0 {
            exit::SUCCESS
        } else {
            exit::FAILURE
        });
    }
    for i in 0..count {
        let key = EntryKey::new(TORTURE_NS, &format!("{seed}/{i}"));
        let mut b = store.builder(&key).map_err(|e| e.to_string())?;
        for (j, data) in torture_content(seed, i, shape).iter().enumerate() {
            b.add_bytes(&format!("f{j}"), 0o644, data)
                .map_err(|e| e.to_string())?;
        }
        if shape == "step" {
            let log = format!("step {i} starting\nbuilding out/{i}.txt\nstep {i} done\n");
            b.attach("log", log.as_bytes()).map_err(|e| e.to_string())?;
        }
        b.metadata(shape.as_bytes());
        let m = b.finish();
        store.put_entry(&m).map_err(|e| e.to_string())?;
    }
    Ok(exit::SUCCESS)
}
