//! A parallel tree walk that `lstat`s every file relative to an open folder descriptor
//! (`fstatat`), so the kernel resolves one name per file instead of a whole path, and nothing
//! is allocated per entry beyond the relative path we return. `.gitignore` files (and, in a
//! git work tree, the ancestors' `.gitignore` and `.git/info/exclude`) are honoured with the
//! `ignore` crate's matchers; `.git` is always skipped.
//!
//! Folders are handed out from a shared queue, so both cores stay busy on lopsided trees.

use std::ffi::CStr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

use super::statcache::Stat;

/// One file or symlink found.
pub struct Found {
    /// Path relative to the root.
    pub rel: String,
    /// Its `lstat`.
    pub stat: Stat,
    /// Whether it is a symlink.
    pub symlink: bool,
}

/// A chain of `.gitignore` matchers, innermost first.
struct Ignores {
    gi: Gitignore,
    parent: Option<Arc<Ignores>>,
}

fn is_ignored(stack: &Option<Arc<Ignores>>, path: &Path, is_dir: bool) -> bool {
    let mut cur = stack.as_deref();
    while let Some(node) = cur {
        let m = node.gi.matched(path, is_dir);
        if m.is_ignore() {
            return true;
        }
        if m.is_whitelist() {
            return false;
        }
        cur = node.parent.as_deref();
    }
    false
}

fn push_ignore(stack: &Option<Arc<Ignores>>, dir: &Path, file: &Path) -> Option<Arc<Ignores>> {
    let mut b = GitignoreBuilder::new(dir);
    if b.add(file).is_some() {
        tracing::debug!(
            "cache: `{}` has errors; using the valid lines",
            file.display()
        );
    }
    match b.build() {
        Ok(gi) if !gi.is_empty() => Some(Arc::new(Ignores {
            gi,
            parent: stack.clone(),
        })),
        _ => stack.clone(),
    }
}

/// Matchers that apply above `root`: the `.gitignore` files from the work tree's top down
/// to `root`'s parent, and `.git/info/exclude`.
fn ancestor_ignores(root: &Path) -> Option<Arc<Ignores>> {
    let mut top = None;
    let mut cur = Some(root);
    while let Some(d) = cur {
        if d.join(".git").exists() {
            top = Some(d.to_path_buf());
            break;
        }
        cur = d.parent();
    }
    let top = top?;
    let mut stack = None;
    let exclude = top.join(".git/info/exclude");
    if exclude.is_file() {
        stack = push_ignore(&stack, &top, &exclude);
    }
    let rel = root.strip_prefix(&top).ok()?;
    let mut dir = top.clone();
    let mut chain = vec![dir.clone()];
    for c in rel.components() {
        dir.push(c);
        chain.push(dir.clone());
    }
    chain.pop(); // root's own .gitignore is read by the walk
    for d in chain {
        let f = d.join(".gitignore");
        if f.is_file() {
            stack = push_ignore(&stack, &d, &f);
        }
    }
    stack
}

struct Job {
    rel: String,
    ignores: Option<Arc<Ignores>>,
}

struct Queue {
    jobs: Vec<Job>,
    busy: usize,
    error: Option<String>,
}

/// Walks `root` (absolute) on `threads` threads.
pub fn walk(
    root: &Path,
    threads: usize,
    gitignore: bool,
    filter: Option<&super::PathFilter>,
) -> Result<Vec<Found>, String> {
    let ignores = if gitignore {
        ancestor_ignores(root)
    } else {
        None
    };
    let queue = Mutex::new(Queue {
        jobs: vec![Job {
            rel: String::new(),
            ignores,
        }],
        busy: 0,
        error: None,
    });
    let wake = Condvar::new();
    let results: Mutex<Vec<Vec<Found>>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut out = Vec::new();
                loop {
                    let job = {
                        let Ok(mut q) = queue.lock() else { break };
                        loop {
                            if q.error.is_some() {
                                break None;
                            }
                            if let Some(j) = q.jobs.pop() {
                                q.busy += 1;
                                break Some(j);
                            }
                            if q.busy == 0 {
                                break None;
                            }
                            q = match wake.wait(q) {
                                Ok(q) => q,
                                Err(_) => return,
                            };
                        }
                    };
                    let Some(job) = job else {
                        wake.notify_all();
                        break;
                    };
                    let mut subdirs = Vec::new();
                    let r = walk_dir(root, &job, gitignore, filter, &mut out, &mut subdirs);
                    if let Ok(mut q) = queue.lock() {
                        q.busy -= 1;
                        if let Err(e) = r {
                            q.error.get_or_insert(e);
                        }
                        q.jobs.extend(subdirs);
                    }
                    wake.notify_all();
                }
                if let Ok(mut r) = results.lock() {
                    r.push(out);
                }
            });
        }
    });
    let q = queue
        .into_inner()
        .map_err(|_| "walker thread panicked".to_owned())?;
    if let Some(e) = q.error {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .map_err(|_| "walker thread panicked".to_owned())?
        .into_iter()
        .flatten()
        .collect())
}

fn open_dir(path: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
}

#[allow(
    clippy::useless_conversion,
    clippy::unnecessary_cast,
    reason = "field types of `struct stat` differ between architectures"
)]
fn to_stat(st: &rustix::fs::Stat) -> Stat {
    Stat {
        size: st.st_size as u64,
        mtime_s: st.st_mtime as i64,
        mtime_ns: st.st_mtime_nsec as u32,
        ctime_s: st.st_ctime as i64,
        ctime_ns: st.st_ctime_nsec as u32,
        ino: st.st_ino as u64,
        mode: st.st_mode as u32,
    }
}

fn walk_dir(
    root: &Path,
    job: &Job,
    gitignore: bool,
    filter: Option<&super::PathFilter>,
    out: &mut Vec<Found>,
    subdirs: &mut Vec<Job>,
) -> Result<(), String> {
    let dir_path: PathBuf = if job.rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(&job.rel)
    };
    let fd = match open_dir(&dir_path) {
        Ok(fd) => fd,
        // Removed while walking, or replaced by a file: not part of the tree any more.
        Err(e) if e == rustix::io::Errno::NOENT || e == rustix::io::Errno::NOTDIR => {
            return Ok(());
        }
        Err(e) => return Err(format!("{}: {e}", dir_path.display())),
    };
    // Names go into one buffer, NUL-terminated, so `fstatat` needs no allocation per entry.
    let mut names: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut entries: Vec<(u32, u32, FileType)> = Vec::new();
    let mut has_gitignore = false;
    let mut dir = Dir::read_from(&fd).map_err(|e| format!("{}: {e}", dir_path.display()))?;
    while let Some(e) = dir.read() {
        let e = e.map_err(|e| format!("{}: {e}", dir_path.display()))?;
        let name = e.file_name();
        let b = name.to_bytes();
        if b == b"." || b == b".." || b == b".git" {
            continue;
        }
        if b == b".gitignore" {
            has_gitignore = true;
        }
        let start = names.len() as u32;
        names.extend_from_slice(name.to_bytes_with_nul());
        entries.push((start, names.len() as u32, e.file_type()));
    }
    let ignores = if gitignore && has_gitignore {
        push_ignore(&job.ignores, &dir_path, &dir_path.join(".gitignore"))
    } else {
        job.ignores.clone()
    };
    for (start, end, mut ft) in entries {
        let Ok(name) = CStr::from_bytes_with_nul(&names[start as usize..end as usize]) else {
            continue;
        };
        let Ok(name_str) = name.to_str() else {
            tracing::warn!(
                "cache: skipping `{}`: its name is not UTF-8",
                dir_path
                    .join(String::from_utf8_lossy(name.to_bytes()).as_ref())
                    .display()
            );
            continue;
        };
        let mut stat = None;
        if ft == FileType::Unknown {
            match rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => {
                    ft = FileType::from_raw_mode(st.st_mode as _);
                    stat = Some(st);
                }
                Err(_) => continue,
            }
        }
        let is_dir = ft == FileType::Directory;
        if !(is_dir || ft == FileType::RegularFile || ft == FileType::Symlink) {
            continue;
        }
        if ignores.is_some() && is_ignored(&ignores, &dir_path.join(name_str), is_dir) {
            continue;
        }
        let rel = format!("{}{name_str}", job.rel);
        if let Some(f) = filter
            && !f(&rel, is_dir)
        {
            continue;
        }
        if is_dir {
            subdirs.push(Job {
                rel: rel + "/",
                ignores: ignores.clone(),
            });
            continue;
        }
        let st = match stat {
            Some(st) => st,
            None => match rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Deleted while walking.
                Err(e) if e == rustix::io::Errno::NOENT => continue,
                Err(e) => return Err(format!("{}: {e}", dir_path.join(name_str).display())),
            },
        };
        let stat = to_stat(&st);
        out.push(Found {
            rel,
            symlink: stat.mode & 0o170000 == 0o120000,
            stat,
        });
    }
    Ok(())
}
