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

struct Parsed {
    package: Vec<Entry>,
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

/// A package as the parsers see it: name, its line, version, source, dependencies.
struct Entry {
    name: String,
    line: u32,
    version: String,
    source: Option<String>,
    dependencies: Vec<String>,
}

/// Reads Cargo's own layout line by line (about ten times faster than a TOML parser, which
/// matters for the whole-process time of a scan). Anything it does not expect — comments in
/// odd places, inline tables, escapes, a hand-edited file — makes it give up, and the TOML
/// parser reads the file instead.
fn fast(text: &str) -> Option<Vec<Entry>> {
    let mut out: Vec<Entry> = Vec::new();
    let mut in_package = false;
    let mut in_deps = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        if in_deps {
            if line == "]" {
                in_deps = false;
            } else {
                let dep = line.trim().strip_prefix('"')?.strip_suffix(',')?;
                let dep = quoted_body(dep.strip_suffix('"')?)?;
                out.last_mut()?.dependencies.push(dep.to_owned());
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "[[package]]" {
            in_package = true;
            out.push(Entry {
                name: String::new(),
                line: 0,
                version: String::new(),
                source: None,
                dependencies: Vec::new(),
            });
            continue;
        }
        if line.starts_with('[') {
            // `[metadata]` (v1 checksums) and anything after it is not about packages.
            in_package = false;
            if line != "[metadata]" {
                return None;
            }
            continue;
        }
        // `key = "value"`, split at the first `=` (a char search, unlike a `" = "` pattern
        // that builds a substring searcher for every line).
        let (key, value) = line.split_once('=')?;
        let (key, value) = (key.strip_suffix(' ')?, value.strip_prefix(' ')?);
        if !in_package {
            // Top level `version = N`, or `[metadata]` checksum lines.
            continue;
        }
        let p = out.last_mut()?;
        if key == "dependencies" {
            match value {
                "[" => in_deps = true,
                "[]" => {}
                _ => return None,
            }
            continue;
        }
        let v = quoted_body(value.strip_prefix('"')?.strip_suffix('"')?)?;
        match key {
            "name" => {
                p.name = v.to_owned();
                p.line = i as u32 + 1;
            }
            "version" => p.version = v.to_owned(),
            "source" => p.source = Some(v.to_owned()),
            "checksum" | "replace" => {}
            _ => return None,
        }
    }
    if in_deps
        || out
            .iter()
            .any(|p| p.name.is_empty() || p.version.is_empty())
    {
        return None;
    }
    Some(out)
}

/// The inside of a `"…"` string when it needs no unescaping.
fn quoted_body(v: &str) -> Option<&str> {
    (!v.bytes().any(|b| b == b'"' || b == b'\\')).then_some(v)
}

fn with_toml(text: &str) -> Result<Vec<Entry>, ParseError> {
    let lines = Lines::new(text);
    let lock: Lock = toml::from_str(text).map_err(|e| {
        ParseError::at(
            e.span().map(|s| lines.line(s.start)),
            e.message().trim().to_owned(),
        )
    })?;
    Ok(lock
        .package
        .into_iter()
        .map(|p| Entry {
            line: lines.line(p.name.span().start),
            name: p.name.into_inner(),
            version: p.version,
            source: p.source,
            dependencies: p.dependencies,
        })
        .collect())
}

pub(super) fn parse(text: &str, ctx: &FileCtx<'_>) -> Result<Vec<Package>, ParseError> {
    let packages = match fast(text) {
        Some(p) => p,
        None => with_toml(text)?,
    };
    let lock = Parsed { package: packages };
    // Index by name for resolving dependency strings.
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in lock.package.iter().enumerate() {
        by_name.entry(p.name.as_str()).or_default().push(i);
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
            let name = &p.name;
            let line = p.line;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| {
                format!(
                    "{}:{} {} {:?} {:?}",
                    e.line, e.name, e.version, e.source, e.dependencies
                )
            })
            .collect()
    }

    /// The line reader takes every Cargo-written lockfile of the corpus (v1 to v4) and reads
    /// it exactly as the TOML parser does.
    #[test]
    fn fast_reader_equals_toml_on_the_corpus() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/scan/cargo-audit/lockfiles");
        let mut n = 0;
        for e in std::fs::read_dir(dir).expect("corpus") {
            let text = std::fs::read_to_string(e.expect("entry").path().join("Cargo.lock"))
                .expect("lockfile");
            let fast = fast(&text).expect("the line reader accepts Cargo's own layout");
            let slow = with_toml(&text).expect("valid TOML");
            assert_eq!(summary(&fast), summary(&slow));
            n += 1;
        }
        assert!(n >= 20);
    }

    #[test]
    fn unusual_files_fall_back_to_toml() {
        for odd in [
            "[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nsource = { registry = \"x\" }\n",
            "[[package]]\nname = 'a'\nversion = \"1.0.0\"\n",
            "[[package]]\nname = \"a\\u0041\"\nversion = \"1.0.0\"\n",
            "[[package]]\nname=\"a\"\nversion = \"1.0.0\"\n",
        ] {
            assert!(fast(odd).is_none(), "{odd}");
        }
    }
}
