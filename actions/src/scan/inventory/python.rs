//! Python: `requirements*.txt` (only `==`/`===` pins are exact; the rest is reported as not
//! checked), `poetry.lock`, `Pipfile.lock` and `uv.lock`.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::Value;

use super::json_lines::{SEP, object_key_lines};
use super::{FileCtx, Lines, Origin, Package, ParseError, purl_enc};
use crate::scan::Warning;
use crate::scan::db::normalize_name;

fn purl(name: &str, version: &str) -> String {
    format!(
        "pkg:pypi/{}@{}",
        purl_enc(&normalize_name("PyPI", name)),
        purl_enc(version)
    )
}

/// `requirements*.txt`.
pub(super) fn requirements(
    text: &str,
    ctx: &FileCtx<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<Package>, ParseError> {
    let mut out = Vec::new();
    let mut unpinned = Vec::new();
    let mut logical = String::new();
    let mut start_line = 0u32;
    for (i, raw) in text.lines().enumerate() {
        if logical.is_empty() {
            start_line = i as u32 + 1;
        }
        // Comments start at `#` preceded by whitespace (or at the line start).
        let mut line = raw;
        if let Some(pos) = raw
            .find('#')
            .filter(|&p| p == 0 || raw[..p].ends_with([' ', '\t']))
        {
            line = &raw[..pos];
        }
        if let Some(cont) = line.trim_end().strip_suffix('\\') {
            logical.push_str(cont);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        let entry = std::mem::take(&mut logical);
        let entry = entry.trim();
        if entry.is_empty() || entry.starts_with('-') {
            // Options (`-r`, `-c`, `-e`, `--index-url`, `--hash` lines) name no pin.
            continue;
        }
        // Drop environment markers and per-requirement options.
        let spec = entry.split(';').next().unwrap_or(entry);
        let spec = spec.split(" --").next().unwrap_or(spec).trim();
        if spec.contains("://") || spec.starts_with('.') || spec.starts_with('/') {
            unpinned.push(spec.to_owned());
            continue;
        }
        let pin = spec
            .split_once("===")
            .or_else(|| spec.split_once("=="))
            .filter(|(_, v)| !v.contains([',', '*', '<', '>', '!', '~']));
        match pin {
            Some((name, version)) => {
                let name = name.split('[').next().unwrap_or(name).trim();
                let version = version.trim();
                if name.is_empty() || version.is_empty() {
                    unpinned.push(spec.to_owned());
                    continue;
                }
                out.push(ctx.package(
                    "PyPI",
                    name,
                    version,
                    purl(name, version),
                    start_line,
                    true,
                    false,
                    Origin::Registry,
                ));
            }
            None => unpinned.push(spec.to_owned()),
        }
    }
    if !unpinned.is_empty() {
        let shown: Vec<String> = unpinned.iter().take(5).map(|s| format!("`{s}`")).collect();
        let more = unpinned.len().saturating_sub(5);
        warnings.push(Warning::at(
            "unpinned",
            ctx.rel,
            None,
            format!(
                "{} requirement{} not pinned with `==` and not checked: {}{}",
                unpinned.len(),
                if unpinned.len() == 1 { " is" } else { "s are" },
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        ));
    }
    Ok(out)
}

#[derive(Deserialize)]
struct PoetryLock {
    #[serde(default)]
    package: Vec<PoetryPkg>,
}

#[derive(Deserialize)]
struct PoetryPkg {
    name: toml::Spanned<String>,
    version: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    source: Option<toml::Table>,
}

fn toml_err(lines: &Lines, e: toml::de::Error) -> ParseError {
    ParseError::at(
        e.span().map(|s| lines.line(s.start)),
        e.message().trim().to_owned(),
    )
}

/// Direct dependency names from a sibling `pyproject.toml` (PEP 621 and Poetry tables).
fn pyproject_direct(ctx: &FileCtx<'_>) -> Option<HashSet<String>> {
    let text = ctx.sibling("pyproject.toml")?;
    let v: toml::Table = toml::from_str(&text).ok()?;
    let mut out = HashSet::new();
    let req_name = |s: &str| {
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .unwrap_or(s.len());
        normalize_name("PyPI", &s[..end])
    };
    if let Some(deps) = v
        .get("project")
        .and_then(|p| p.get("dependencies"))
        .and_then(|d| d.as_array())
    {
        out.extend(deps.iter().filter_map(|d| d.as_str()).map(req_name));
    }
    if let Some(groups) = v
        .get("project")
        .and_then(|p| p.get("optional-dependencies"))
        .and_then(|d| d.as_table())
    {
        for g in groups.values().filter_map(|g| g.as_array()) {
            out.extend(g.iter().filter_map(|d| d.as_str()).map(req_name));
        }
    }
    if let Some(groups) = v.get("dependency-groups").and_then(|d| d.as_table()) {
        for g in groups.values().filter_map(|g| g.as_array()) {
            out.extend(g.iter().filter_map(|d| d.as_str()).map(req_name));
        }
    }
    if let Some(poetry) = v.get("tool").and_then(|t| t.get("poetry")) {
        for key in ["dependencies", "dev-dependencies"] {
            if let Some(t) = poetry.get(key).and_then(|d| d.as_table()) {
                out.extend(t.keys().map(|k| normalize_name("PyPI", k)));
            }
        }
        if let Some(groups) = poetry.get("group").and_then(|g| g.as_table()) {
            for g in groups.values() {
                if let Some(t) = g.get("dependencies").and_then(|d| d.as_table()) {
                    out.extend(t.keys().map(|k| normalize_name("PyPI", k)));
                }
            }
        }
    }
    out.remove("python");
    Some(out)
}

/// Package indexes other than pypi.org (`legacy` sources, uv registries) are taken for PyPI
/// mirrors, as they nearly always are: Python has one package namespace, unlike Cargo's
/// alternative registries.
fn source_origin(source: Option<&toml::Table>) -> Origin {
    let Some(s) = source else {
        return Origin::Registry;
    };
    match s.get("type").and_then(|t| t.as_str()) {
        Some("git") => Origin::Git,
        Some("directory") | Some("file") => Origin::Path,
        Some("url") => Origin::Url,
        _ => Origin::Registry,
    }
}

/// `poetry.lock`.
pub(super) fn poetry_lock(text: &str, ctx: &FileCtx<'_>) -> Result<Vec<Package>, ParseError> {
    let lines = Lines::new(text);
    let lock: PoetryLock = toml::from_str(text).map_err(|e| toml_err(&lines, e))?;
    let direct = pyproject_direct(ctx);
    Ok(lock
        .package
        .iter()
        .map(|p| {
            let name = p.name.get_ref();
            let dev = p.category.as_deref() == Some("dev")
                || (!p.groups.is_empty() && !p.groups.iter().any(|g| g == "main"));
            ctx.package(
                "PyPI",
                name,
                &p.version,
                purl(name, &p.version),
                lines.line(p.name.span().start),
                direct
                    .as_ref()
                    .is_some_and(|d| d.contains(&normalize_name("PyPI", name))),
                dev,
                source_origin(p.source.as_ref()),
            )
        })
        .collect())
}

/// `Pipfile.lock` (JSON; `default` and `develop` sections).
pub(super) fn pipfile_lock(text: &str, ctx: &FileCtx<'_>) -> Result<Vec<Package>, ParseError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| ParseError::at(Some(e.line() as u32), e.to_string()))?;
    let lines = object_key_lines(text);
    // Pipfile lists the direct dependencies.
    let direct: Option<HashSet<String>> = ctx.sibling("Pipfile").and_then(|t| {
        let t: toml::Table = toml::from_str(&t).ok()?;
        let mut s = HashSet::new();
        for k in ["packages", "dev-packages"] {
            if let Some(tab) = t.get(k).and_then(|x| x.as_table()) {
                s.extend(tab.keys().map(|n| normalize_name("PyPI", n)));
            }
        }
        Some(s)
    });
    let mut out = Vec::new();
    for (section, dev) in [("default", false), ("develop", true)] {
        let Some(m) = v.get(section).and_then(Value::as_object) else {
            continue;
        };
        for (name, entry) in m {
            let Some(version) = entry
                .get("version")
                .and_then(Value::as_str)
                .and_then(|s| s.strip_prefix("===").or(s.strip_prefix("==")))
            else {
                continue;
            };
            let origin = if entry.get("git").is_some() {
                Origin::Git
            } else if entry.get("path").is_some() || entry.get("file").is_some() {
                Origin::Path
            } else {
                Origin::Registry
            };
            out.push(
                ctx.package(
                    "PyPI",
                    name,
                    version,
                    purl(name, version),
                    lines
                        .get(&format!("{section}{SEP}{name}"))
                        .copied()
                        .unwrap_or(1),
                    direct
                        .as_ref()
                        .is_some_and(|d| d.contains(&normalize_name("PyPI", name))),
                    dev,
                    origin,
                ),
            );
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct UvLock {
    #[serde(default)]
    package: Vec<UvPkg>,
}

#[derive(Deserialize)]
struct UvPkg {
    name: toml::Spanned<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    source: Option<toml::Table>,
    #[serde(default)]
    dependencies: Vec<UvDep>,
    #[serde(default, rename = "optional-dependencies")]
    optional_dependencies: Option<toml::Table>,
    #[serde(default, rename = "dev-dependencies")]
    dev_dependencies: Option<toml::Table>,
}

#[derive(Deserialize)]
struct UvDep {
    name: String,
}

/// `uv.lock`.
pub(super) fn uv_lock(text: &str, ctx: &FileCtx<'_>) -> Result<Vec<Package>, ParseError> {
    let lines = Lines::new(text);
    let lock: UvLock = toml::from_str(text).map_err(|e| toml_err(&lines, e))?;
    let is_root = |p: &UvPkg| {
        p.source
            .as_ref()
            .is_some_and(|s| s.contains_key("editable") || s.contains_key("virtual"))
    };
    let mut prod: HashSet<String> = HashSet::new();
    let mut dev: HashSet<String> = HashSet::new();
    let names_of = |t: &toml::Table| -> Vec<String> {
        t.values()
            .filter_map(|v| v.as_array())
            .flatten()
            .filter_map(|d| d.get("name").and_then(|n| n.as_str()))
            .map(|n| normalize_name("PyPI", n))
            .collect()
    };
    for p in lock.package.iter().filter(|p| is_root(p)) {
        prod.extend(
            p.dependencies
                .iter()
                .map(|d| normalize_name("PyPI", &d.name)),
        );
        if let Some(t) = &p.optional_dependencies {
            prod.extend(names_of(t));
        }
        if let Some(t) = &p.dev_dependencies {
            dev.extend(names_of(t));
        }
    }
    Ok(lock
        .package
        .iter()
        .filter(|p| !is_root(p))
        .filter_map(|p| {
            let name = p.name.get_ref();
            let version = p.version.as_deref()?;
            let key = normalize_name("PyPI", name);
            let origin = match &p.source {
                Some(s) if s.contains_key("git") => Origin::Git,
                Some(s) if s.contains_key("path") || s.contains_key("directory") => Origin::Path,
                Some(s) if s.contains_key("url") => Origin::Url,
                _ => Origin::Registry,
            };
            Some(ctx.package(
                "PyPI",
                name,
                version,
                purl(name, version),
                lines.line(p.name.span().start),
                prod.contains(&key) || dev.contains(&key),
                dev.contains(&key) && !prod.contains(&key),
                origin,
            ))
        })
        .collect())
}
