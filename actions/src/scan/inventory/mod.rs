//! Inventory: finding lockfiles and package databases below a directory and reading them into
//! [`Package`]s, each with its purl, source file and line, and direct/dev flags.
//!
//! Parsers never fail the scan: a file that cannot be read or parsed becomes a [`Warning`]
//! naming the file and line, and the other files are still scanned.

mod cargo;
mod go;
mod json_lines;
mod npm;
mod os;
mod python;
mod ruby;

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Warning;

/// Where a package comes from; only registry packages are matched against advisories,
/// because advisories describe the registry's releases (cargo-audit does the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// The ecosystem's public registry (or the distribution's archive).
    Registry,
    /// Another registry.
    AltRegistry,
    /// A git repository.
    Git,
    /// A local path or workspace member.
    Path,
    /// A URL or tarball.
    Url,
}

/// One package found in a lockfile or package database.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Package {
    /// OSV ecosystem (`crates.io`, `npm`, `PyPI`, `Go`, `RubyGems`, `Debian:12`, `Alpine:v3.19`).
    pub ecosystem: String,
    /// Name as written in the lockfile.
    pub name: String,
    /// Version as written.
    pub version: String,
    /// Package URL.
    pub purl: String,
    /// Source file, relative to the scanned directory, `/`-separated.
    pub source_file: String,
    /// 1-based line of the package's entry.
    pub line: u32,
    /// Whether the project depends on it directly.
    pub direct: bool,
    /// Whether only development dependencies need it.
    pub dev: bool,
    /// Where it comes from.
    pub origin: Origin,
    /// For OS packages, the source package (name, version) that advisories are keyed by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_package: Option<(String, String)>,
    /// For image targets, the layer (diff id) that added the source file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
}

impl Package {
    /// The (name, version) advisories are matched against.
    pub fn match_key(&self) -> (&str, &str) {
        match &self.source_package {
            Some((n, v)) => (n, v),
            None => (&self.name, &self.version),
        }
    }
}

/// Which parser reads a file, by its name (and, for OS databases, its path).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `Cargo.lock`.
    CargoLock,
    /// `package-lock.json`, `npm-shrinkwrap.json`.
    PackageLock,
    /// `yarn.lock`.
    YarnLock,
    /// `pnpm-lock.yaml`.
    PnpmLock,
    /// `requirements*.txt`.
    Requirements,
    /// `poetry.lock`.
    PoetryLock,
    /// `Pipfile.lock`.
    PipfileLock,
    /// `uv.lock`.
    UvLock,
    /// `go.mod`.
    GoMod,
    /// `go.sum` (only without a `go.mod` beside it).
    GoSum,
    /// `Gemfile.lock`.
    GemfileLock,
    /// `var/lib/dpkg/status` and `status.d/*`.
    Dpkg,
    /// `lib/apk/db/installed`.
    Apk,
}

/// The parser for a path relative to the scan root, if any.
pub fn kind_of(rel: &str) -> Option<Kind> {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    Some(match name {
        "Cargo.lock" => Kind::CargoLock,
        "package-lock.json" | "npm-shrinkwrap.json" => Kind::PackageLock,
        "yarn.lock" => Kind::YarnLock,
        "pnpm-lock.yaml" => Kind::PnpmLock,
        "poetry.lock" => Kind::PoetryLock,
        "Pipfile.lock" => Kind::PipfileLock,
        "uv.lock" => Kind::UvLock,
        "go.mod" => Kind::GoMod,
        "go.sum" => Kind::GoSum,
        "Gemfile.lock" | "gems.locked" => Kind::GemfileLock,
        n if n.starts_with("requirements") && n.ends_with(".txt") => Kind::Requirements,
        _ if rel == "var/lib/dpkg/status"
            || rel.ends_with("/var/lib/dpkg/status")
            || rel.starts_with("var/lib/dpkg/status.d/")
            || rel.contains("/var/lib/dpkg/status.d/") =>
        {
            Kind::Dpkg
        }
        _ if rel == "lib/apk/db/installed" || rel.ends_with("/lib/apk/db/installed") => Kind::Apk,
        _ => return None,
    })
}

/// What the walk found.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Packages, sorted by file, line, name, version.
    pub packages: Vec<Package>,
    /// Files read, relative and sorted.
    pub files: Vec<String>,
    /// Problems.
    pub warnings: Vec<Warning>,
}

/// Options for finding files.
#[derive(Clone, Debug, Default)]
pub struct WalkOptions {
    /// Honour `.gitignore` files.
    pub gitignore: bool,
    /// Globs of directories to skip (relative paths).
    pub skip_dirs: Vec<String>,
    /// Globs of files to skip.
    pub skip_files: Vec<String>,
    /// Files larger than this are skipped with a warning.
    pub max_file_size: u64,
}

/// A problem with the walk options.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// A glob does not parse.
    #[error("invalid glob `{glob}`: {reason}")]
    Glob {
        /// The glob.
        glob: String,
        /// Why.
        reason: String,
    },
    /// The root is not a readable directory.
    #[error("cannot scan `{path}`: {reason}")]
    Root {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn globset(globs: &[String]) -> Result<globset::GlobSet, WalkError> {
    let mut b = globset::GlobSetBuilder::new();
    for g in globs {
        let pat = g.trim_end_matches('/');
        for p in [pat.to_owned(), format!("**/{pat}")] {
            b.add(globset::Glob::new(&p).map_err(|e| WalkError::Glob {
                glob: g.clone(),
                reason: e.kind().to_string(),
            })?);
        }
    }
    b.build().map_err(|e| WalkError::Glob {
        glob: globs.join(", "),
        reason: e.to_string(),
    })
}

fn rel_path(root: &Path, p: &Path) -> String {
    let rel = p.strip_prefix(root).unwrap_or(p);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Every regular file below `root` (relative, `/`-separated, sorted), honouring the walk
/// options; symbolic links are never followed. A single file is listed as its own name.
pub fn walk_files(root: &Path, opts: &WalkOptions) -> Result<Vec<String>, WalkError> {
    let meta = std::fs::metadata(root).map_err(|e| WalkError::Root {
        path: root.to_path_buf(),
        reason: super::io_reason(&e),
    })?;
    if !meta.is_dir() {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![name]);
    }
    let skip_dirs = globset(&opts.skip_dirs)?;
    let skip_files = globset(&opts.skip_files)?;
    let root_buf = root.to_path_buf();
    let mut walk = ignore::WalkBuilder::new(root);
    walk.standard_filters(false)
        .hidden(false)
        .git_ignore(opts.gitignore)
        .git_exclude(opts.gitignore)
        .require_git(false)
        .parents(false)
        .follow_links(false)
        .sort_by_file_path(|a, b| a.cmp(b));
    walk.filter_entry(move |e| {
        if e.depth() == 0 {
            return true;
        }
        let is_dir = e.file_type().is_some_and(|t| t.is_dir());
        if is_dir {
            // `.git` holds no lockfiles; `node_modules` is covered by the lockfile beside it.
            let name = e.file_name();
            if name == ".git" || name == "node_modules" {
                return false;
            }
            return !skip_dirs.is_match(rel_path(&root_buf, e.path()));
        }
        true
    });
    let mut out = Vec::new();
    for entry in walk.build().flatten() {
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let rel = rel_path(root, entry.path());
        if skip_files.is_match(&rel) {
            continue;
        }
        out.push(rel);
    }
    out.sort();
    Ok(out)
}

/// Finds the files to read below `root`.
pub fn find_files(root: &Path, opts: &WalkOptions) -> Result<Vec<(String, Kind)>, WalkError> {
    if !root.is_dir() {
        // A single file is scanned as itself.
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Err(e) = std::fs::metadata(root) {
            return Err(WalkError::Root {
                path: root.to_path_buf(),
                reason: super::io_reason(&e),
            });
        }
        return Ok(kind_of(&name).map(|k| vec![(name, k)]).unwrap_or_default());
    }
    let mut out: Vec<(String, Kind)> = walk_files(root, opts)?
        .into_iter()
        .filter_map(|rel| kind_of(&rel).map(|k| (rel, k)))
        .collect();
    // go.sum only counts where no go.mod stands beside it (go.mod is the build list).
    let mods: std::collections::HashSet<String> = out
        .iter()
        .filter(|(_, k)| *k == Kind::GoMod)
        .map(|(r, _)| r.trim_end_matches("go.mod").to_owned())
        .collect();
    out.retain(|(r, k)| *k != Kind::GoSum || !mods.contains(r.trim_end_matches("go.sum")));
    out.sort();
    Ok(out)
}

/// Reads every lockfile below `root`.
pub fn collect(root: &Path, opts: &WalkOptions) -> Result<Inventory, WalkError> {
    let files = find_files(root, opts)?;
    let base = if root.is_dir() {
        root.to_path_buf()
    } else {
        root.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let mut inv = Inventory::default();
    for (rel, kind) in files {
        let path = base.join(&rel);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if opts.max_file_size > 0 && size > opts.max_file_size {
            inv.warnings.push(Warning::at(
                "file-too-large",
                &rel,
                None,
                format!(
                    "skipped: {} MiB is over the {} MiB limit (`--max-file-size`)",
                    size / (1024 * 1024),
                    opts.max_file_size / (1024 * 1024)
                ),
            ));
            continue;
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                inv.warnings.push(Warning::at(
                    "file-unreadable",
                    &rel,
                    None,
                    format!("cannot read: {}", super::io_reason(&e)),
                ));
                continue;
            }
        };
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t,
            Err(e) => {
                let line = line_of(&bytes, e.valid_up_to());
                inv.warnings.push(Warning::at(
                    "file-invalid",
                    &rel,
                    Some(line),
                    "not a text file (invalid UTF-8); skipped".into(),
                ));
                continue;
            }
        };
        let ctx = FileCtx {
            rel: &rel,
            dir: path.parent().unwrap_or(&base),
            root: &base,
        };
        let result = parse(kind, text, &ctx, &mut inv.warnings);
        match result {
            Ok(pkgs) => inv.packages.extend(pkgs),
            Err(ParseError { line, message }) => inv.warnings.push(Warning::at(
                "file-invalid",
                &rel,
                line,
                format!("cannot parse: {message}; skipped"),
            )),
        }
        inv.files.push(rel);
    }
    inv.packages.sort_by(|a, b| {
        (&a.source_file, a.line, &a.name, &a.version, &a.ecosystem).cmp(&(
            &b.source_file,
            b.line,
            &b.name,
            &b.version,
            &b.ecosystem,
        ))
    });
    inv.packages.dedup();
    Ok(inv)
}

/// What a parser knows about its file.
pub struct FileCtx<'a> {
    /// Relative path for reports.
    pub rel: &'a str,
    /// The directory the file is in (for sibling manifests such as `package.json`).
    pub dir: &'a Path,
    /// The scan root (for `etc/os-release` next to OS databases).
    pub root: &'a Path,
}

impl FileCtx<'_> {
    /// A package of this file.
    #[allow(clippy::too_many_arguments)]
    pub fn package(
        &self,
        ecosystem: &str,
        name: &str,
        version: &str,
        purl: String,
        line: u32,
        direct: bool,
        dev: bool,
        origin: Origin,
    ) -> Package {
        Package {
            ecosystem: ecosystem.to_owned(),
            name: name.to_owned(),
            version: version.to_owned(),
            purl,
            source_file: self.rel.to_owned(),
            line,
            direct,
            dev,
            origin,
            source_package: None,
            layer: None,
        }
    }

    /// Reads a sibling file as text, if present.
    pub fn sibling(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(name)).ok()
    }
}

/// A file that could not be parsed at all.
#[derive(Debug)]
pub struct ParseError {
    /// Where, when known.
    pub line: Option<u32>,
    /// What.
    pub message: String,
}

impl ParseError {
    /// An error at a line.
    pub fn at(line: Option<u32>, message: impl Into<String>) -> ParseError {
        ParseError {
            line,
            message: message.into(),
        }
    }
}

fn parse(
    kind: Kind,
    text: &str,
    ctx: &FileCtx<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<Package>, ParseError> {
    match kind {
        Kind::CargoLock => cargo::parse(text, ctx),
        Kind::PackageLock => npm::package_lock(text, ctx),
        Kind::YarnLock => npm::yarn_lock(text, ctx),
        Kind::PnpmLock => npm::pnpm_lock(text, ctx),
        Kind::Requirements => python::requirements(text, ctx, warnings),
        Kind::PoetryLock => python::poetry_lock(text, ctx),
        Kind::PipfileLock => python::pipfile_lock(text, ctx),
        Kind::UvLock => python::uv_lock(text, ctx),
        Kind::GoMod => go::go_mod(text, ctx),
        Kind::GoSum => go::go_sum(text, ctx),
        Kind::GemfileLock => ruby::gemfile_lock(text, ctx),
        Kind::Dpkg => os::dpkg(text, ctx, warnings),
        Kind::Apk => os::apk(text, ctx, warnings),
    }
}

/// 1-based line of a byte offset.
pub fn line_of(bytes: &[u8], offset: usize) -> u32 {
    let end = offset.min(bytes.len());
    memchr::memchr_iter(b'\n', &bytes[..end]).count() as u32 + 1
}

/// Percent-encodes a purl name segment (keeps `/` out of names, `@` of scopes encoded).
pub fn purl_enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A line-number index over a text (for parsers that get byte offsets).
pub struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    /// Indexes a text.
    pub fn new(text: &str) -> Lines {
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        Lines { starts }
    }

    /// Indexes bytes that may not be UTF-8.
    pub fn new_bytes(bytes: &[u8]) -> Lines {
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', bytes).map(|i| i + 1));
        Lines { starts }
    }

    /// 1-based line of an offset.
    pub fn line(&self, offset: usize) -> u32 {
        match self.starts.binary_search(&offset) {
            Ok(i) => i as u32 + 1,
            Err(i) => i as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Parsers never panic: every kind of file, fed garbage and every truncation of a real
    //! fixture, returns packages or an error.

    use super::*;
    use proptest::prelude::*;

    const KINDS: [(Kind, &str); 13] = [
        (Kind::CargoLock, "rust/Cargo.lock"),
        (Kind::PackageLock, "node-v3/package-lock.json"),
        (Kind::YarnLock, "yarn-classic/yarn.lock"),
        (Kind::PnpmLock, "pnpm-v9/pnpm-lock.yaml"),
        (Kind::Requirements, "python/requirements.txt"),
        (Kind::PoetryLock, "poetry/poetry.lock"),
        (Kind::PipfileLock, "pipenv/Pipfile.lock"),
        (Kind::UvLock, "uv/uv.lock"),
        (Kind::GoMod, "go/go.mod"),
        (Kind::GoSum, "go-sum-only/go.sum"),
        (Kind::GemfileLock, "ruby/Gemfile.lock"),
        (Kind::Dpkg, "debian/var/lib/dpkg/status"),
        (Kind::Apk, "alpine/lib/apk/db/installed"),
    ];

    fn fixtures() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/scan/fixtures/project")
    }

    fn run(kind: Kind, text: &str) {
        let dir = std::env::temp_dir();
        let ctx = FileCtx {
            rel: "x",
            dir: &dir,
            root: &dir,
        };
        let mut w = Vec::new();
        let _ = parse(kind, text, &ctx, &mut w);
    }

    #[test]
    fn every_truncation_of_every_fixture() {
        for (kind, rel) in KINDS {
            let text = std::fs::read_to_string(fixtures().join(rel)).expect("fixture");
            for (i, _) in text.char_indices() {
                run(kind, &text[..i]);
            }
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(text in "(\\PC|\n|\"|@|/|=|:| |\\[|\\]|\\{|\\}){0,200}") {
            for (kind, _) in KINDS {
                run(kind, &text);
            }
        }
    }
}
