//! `Cargo.lock`, formats v1 to v4.
//!
//! v1 has no `version` key and lists dependencies as `"name version (source)"`; v2+ shorten
//! them to `"name"` or `"name version"` when unambiguous. Only packages whose `source` is the
//! crates.io index (git or sparse protocol) are registry packages; git, path (no `source`)
//! and other registries are listed but not matched, exactly like cargo-audit.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use super::{FileCtx, Lines, Origin, Package, ParseError};

#[derive(Deserialize)]
struct Lock {
    #[serde(default)]
    package: Vec<Pkg>,
}

#[derive(Deserialize)]
struct Pkg {
    name: toml::Spanned<String>,
    version: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    dependencies: Vec<String>,
}

const CRATES_IO: [&str; 2] = [
    "registry+https://github.com/rust-lang/crates.io-index",
    "sparse+https://index.crates.io/",
];

fn origin(source: Option<&str>) -> Origin {
    match source {
        None => Origin::Path,
        Some(s) if CRATES_IO.contains(&s) => Origin::Registry,
        Some(s) if s.starts_with("git+") => Origin::Git,
        Some(_) => Origin::AltRegistry,
    }
}

pub(super) fn parse(text: &str, ctx: &FileCtx<'_>) -> Result<Vec<Package>, ParseError> {
    let lines = Lines::new(text);
    let lock: Lock = toml::from_str(text).map_err(|e| {
        ParseError::at(
            e.span().map(|s| lines.line(s.start)),
            e.message().trim().to_owned(),
        )
    })?;
    // Index by name for resolving dependency strings.
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in lock.package.iter().enumerate() {
        by_name
            .entry(p.name.get_ref().as_str())
            .or_default()
            .push(i);
    }
    let resolve = |dep: &str| -> Option<usize> {
        let mut parts = dep.split(' ');
        let name = parts.next()?;
        let version = parts.next();
        let source = parts
            .next()
            .map(|s| s.trim_start_matches('(').trim_end_matches(')'));
        let cands = by_name.get(name)?;
        cands.iter().copied().find(|&i| {
            let p = &lock.package[i];
            version.is_none_or(|v| p.version == v)
                && source.is_none_or(|s| p.source.as_deref() == Some(s))
        })
    };
    // Direct = depended on by a package without a source (workspace members and path
    // dependencies, which Cargo.lock does not tell apart).
    let mut direct: HashSet<usize> = HashSet::new();
    for p in lock.package.iter().filter(|p| p.source.is_none()) {
        for d in &p.dependencies {
            if let Some(i) = resolve(d) {
                direct.insert(i);
            }
        }
    }
    Ok(lock
        .package
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let name = p.name.get_ref();
            let line = lines.line(p.name.span().start);
            ctx.package(
                "crates.io",
                name,
                &p.version,
                format!(
                    "pkg:cargo/{}@{}",
                    super::purl_enc(name),
                    super::purl_enc(&p.version)
                ),
                line,
                direct.contains(&i),
                false,
                origin(p.source.as_deref()),
            )
        })
        .collect())
}
