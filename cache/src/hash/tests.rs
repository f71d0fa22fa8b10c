use std::process::Command;

use super::*;

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, data).expect("write");
}

/// Sets a file's mtime into the past so the racy window does not apply.
fn age(root: &Path, rel: &str) {
    let f = fs::File::options()
        .write(true)
        .open(root.join(rel))
        .expect("open");
    f.set_modified(SystemTime::now() - std::time::Duration::from_secs(10))
        .expect("mtime");
}

fn git(root: &Path, args: &[&str]) -> bool {
    Command::new("git")
        .args(["-c", "user.email=t@localhost", "-c", "user.name=t"])
        .args(args)
        .current_dir(root)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn digests_match_content_and_ignore_rules_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tree");
    write(&root, "a.txt", b"a");
    write(&root, "sub/b.txt", b"b");
    write(&root, ".hidden", b"h");
    write(&root, "target/out", b"o");
    write(&root, ".gitignore", b"target/\n");
    write(&root, ".git/HEAD", b"not really");
    std::os::unix::fs::symlink("a.txt", root.join("link")).expect("link");
    let snap = TreeHasher::new(&root).git(false).hash().expect("hash");
    let paths: Vec<&str> = snap.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [".gitignore", ".hidden", "a.txt", "link", "sub/b.txt"]
    );
    assert_eq!(snap.get("sub/b.txt").expect("b").digest, Digest::of(b"b"));
    let link = snap.get("link").expect("link");
    assert_eq!(
        (link.mode, link.digest),
        (SYMLINK_MODE, Digest::of(b"a.txt"))
    );
    let all = TreeHasher::new(&root)
        .git(false)
        .gitignore(false)
        .hash()
        .expect("hash");
    assert!(all.get("target/out").is_some());
    assert!(all.get(".git/HEAD").is_none());
}

#[test]
fn stat_cache_fast_path_and_refresh_after_touch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tree");
    let stat = dir.path().join("stat");
    for i in 0..200 {
        write(
            &root,
            &format!("d{}/f{i}", i % 7),
            format!("{i}").as_bytes(),
        );
        age(&root, &format!("d{}/f{i}", i % 7));
    }
    let h = TreeHasher::new(&root).git(false).stat_cache(&stat);
    let first = h.hash().expect("hash");
    assert_eq!((first.stats.hashed, first.stats.stat_hits), (200, 0));
    assert!(first.stats.saved);
    let second = h.hash().expect("hash");
    assert_eq!((second.stats.hashed, second.stats.stat_hits), (0, 200));
    assert!(!second.stats.saved, "nothing changed, nothing written");
    assert_eq!(first.files, second.files);
    assert_eq!(first.digest(), second.digest());

    // Same content, new mtime: re-hashed once, then back on the fast path.
    for i in 0..200 {
        let p = format!("d{}/f{i}", i % 7);
        fs::File::options()
            .write(true)
            .open(root.join(&p))
            .expect("open")
            .set_modified(SystemTime::now() - std::time::Duration::from_secs(5))
            .expect("mtime");
    }
    let touched = h.hash().expect("hash");
    assert_eq!(touched.stats.hashed, 200);
    assert_eq!(touched.files, first.files);
    let again = h.hash().expect("hash");
    assert_eq!(again.stats.stat_hits, 200);

    // A real edit changes the digest; a deletion drops the file.
    write(&root, "d0/f0", b"changed");
    age(&root, "d0/f0");
    fs::remove_file(root.join("d1/f1")).expect("rm");
    let edited = h.hash().expect("hash");
    assert_eq!(edited.stats.hashed, 1);
    assert_eq!(
        edited.get("d0/f0").expect("f0").digest,
        Digest::of(b"changed")
    );
    assert!(edited.get("d1/f1").is_none());
    assert_eq!(edited.files.len(), 199);
}

#[test]
fn recently_modified_files_are_not_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tree");
    let stat = dir.path().join("stat");
    write(&root, "fresh", b"1");
    // An mtime ahead of the read is always inside the racy window, whatever the load.
    let future = SystemTime::now() + std::time::Duration::from_secs(1);
    let set = |t| {
        fs::File::options()
            .write(true)
            .open(root.join("fresh"))
            .expect("open")
            .set_modified(t)
            .expect("mtime")
    };
    set(future);
    let h = TreeHasher::new(&root).git(false).stat_cache(&stat);
    let first = h.hash().expect("hash");
    assert_eq!(first.stats.racy, 1, "{:?}", first.stats);
    // Rewrite with the same size inside the same tick as far as stat can tell: because the
    // racy record was never stored, the change is seen.
    write(&root, "fresh", b"2");
    set(future);
    let second = h.hash().expect("hash");
    assert_eq!(second.get("fresh").expect("f").digest, Digest::of(b"2"));
}

#[test]
fn git_index_reuses_digests_after_a_fresh_checkout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("repo");
    let stat = dir.path().join("stat");
    fs::create_dir_all(&root).expect("mkdir");
    if !git(&root, &["init", "-q"]) {
        eprintln!("skipping: git is not installed");
        return;
    }
    for i in 0..50 {
        write(
            &root,
            &format!("src/f{i}.txt"),
            format!("file {i}").as_bytes(),
        );
        age(&root, &format!("src/f{i}.txt"));
    }
    write(&root, "untracked.txt", b"u");
    age(&root, "untracked.txt");
    assert!(git(&root, &["add", "src"]));
    assert!(git(&root, &["commit", "-qm", "x"]));
    let h = TreeHasher::new(&root).stat_cache(&stat);
    let first = h.hash().expect("hash");
    assert_eq!(first.stats.hashed, 51);
    let sc = StatCache::load(&statcache::file_for(&stat, &root));
    let with_oid = (0..sc.len())
        .filter(|&i| sc.record(i).oid.is_some())
        .count();
    assert_eq!(with_oid, 50);
    // Rewrite every tracked file with the same content (new times, maybe a new inode),
    // with mtimes in another second (git compares whole seconds only), and let git refresh
    // its index: the stat cache misses, git's index is clean.
    for i in 0..50 {
        let p = root.join(format!("src/f{i}.txt"));
        fs::remove_file(&p).expect("rm");
        fs::write(&p, format!("file {i}")).expect("write");
        fs::File::options()
            .write(true)
            .open(&p)
            .expect("open")
            .set_modified(SystemTime::now() - std::time::Duration::from_secs(30))
            .expect("mtime");
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(git(&root, &["update-index", "-q", "--refresh"]));
    let second = h.hash().expect("hash");
    assert_eq!(second.files, first.files);
    assert_eq!(second.stats.git_hits, 50, "{:?}", second.stats);
    assert_eq!(second.stats.hashed, 0);
    let third = h.hash().expect("hash");
    assert_eq!(third.stats.stat_hits, 51);
}

#[test]
fn missing_root_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = TreeHasher::new(&dir.path().join("nope"))
        .hash()
        .expect_err("missing");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn filters_limit_the_walk_and_keep_other_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tree");
    let stat = dir.path().join("stat");
    for rel in ["src/a.rs", "src/b.rs", "docs/x.md", "build/out.o"] {
        write(&root, rel, rel.as_bytes());
        age(&root, rel);
    }
    let all = TreeHasher::new(&root).git(false).stat_cache(&stat);
    assert_eq!(all.hash().expect("hash").stats.hashed, 4);
    let only_src = TreeHasher::new(&root)
        .git(false)
        .stat_cache(&stat)
        .filter(|p, is_dir| {
            if is_dir {
                p == "src"
            } else {
                p.starts_with("src/")
            }
        });
    let snap = only_src.hash().expect("hash");
    let paths: Vec<&str> = snap.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["src/a.rs", "src/b.rs"]);
    assert_eq!(snap.stats.stat_hits, 2);
    // The records of the other files survived the filtered run.
    assert_eq!(all.hash().expect("hash").stats.stat_hits, 4);
}

#[test]
fn changed_files_reports_edits_after_hashing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tree");
    write(&root, "a", b"1");
    write(&root, "b", b"2");
    let snap = TreeHasher::new(&root).git(false).hash().expect("hash");
    assert!(snap.changed_files().is_empty());
    write(&root, "a", b"11");
    fs::remove_file(root.join("b")).expect("rm");
    assert_eq!(snap.changed_files(), ["a", "b"]);
}

#[test]
fn git_fast_path_is_off_when_checkouts_convert_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("repo");
    fs::create_dir_all(&root).expect("mkdir");
    if !git(&root, &["init", "-q"]) {
        eprintln!("skipping: git is not installed");
        return;
    }
    write(&root, ".gitattributes", b"*.txt text eol=crlf\n");
    write(&root, "a.txt", b"x");
    assert!(git(&root, &["add", "."]));
    assert!(git(&root, &["commit", "-qm", "x"]));
    assert!(git::GitIndex::open(&root).is_none());
    fs::remove_file(root.join(".gitattributes")).expect("rm");
    assert!(git::GitIndex::open(&root).is_some());
    assert!(git(&root, &["config", "core.autocrlf", "input"]));
    assert!(git::GitIndex::open(&root).is_none());
}
