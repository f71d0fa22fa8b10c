//! npm lockfiles: `package-lock.json` / `npm-shrinkwrap.json` (v1 nested `dependencies`,
//! v2/v3 `packages`), `yarn.lock` (classic and berry) and `pnpm-lock.yaml` (v5, v6, v9).
//!
//! yarn and pnpm lockfiles are machine-written with a fixed layout, so they are read line by
//! line: that gives line numbers for free and avoids a YAML parser's node budget on lockfiles
//! with tens of thousands of entries.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::json_lines::{SEP, object_key_lines};
use super::{FileCtx, Origin, Package, ParseError, purl_enc};

/// `pkg:npm/%40scope/name@version`.
pub fn purl(name: &str, version: &str) -> String {
    match name.strip_prefix('@').and_then(|n| n.split_once('/')) {
        Some((scope, n)) => format!(
            "pkg:npm/{}/{}@{}",
            purl_enc(&format!("@{scope}")),
            purl_enc(n),
            purl_enc(version)
        ),
        None => format!("pkg:npm/{}@{}", purl_enc(name), purl_enc(version)),
    }
}

/// Direct dependencies from a `package.json`: name → dev-only.
fn manifest_deps(ctx: &FileCtx<'_>) -> Option<HashMap<String, bool>> {
    let text = ctx.sibling("package.json")?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some(deps_of(&v))
}

fn deps_of(v: &Value) -> HashMap<String, bool> {
    let mut out = HashMap::new();
    for (key, dev) in [
        ("devDependencies", true),
        ("dependencies", false),
        ("optionalDependencies", false),
        ("peerDependencies", false),
    ] {
        if let Some(m) = v.get(key).and_then(Value::as_object) {
            for k in m.keys() {
                // A name in both lists is a production dependency.
                out.insert(k.clone(), dev);
            }
        }
    }
    out
}

fn origin_of(version: &str, resolved: Option<&str>) -> Origin {
    let r = resolved.unwrap_or("");
    let probe = |s: &str| {
        if s.starts_with("git") || s.starts_with("github:") || s.contains("codeload.github.com") {
            Some(Origin::Git)
        } else if s.starts_with("file:") || s.starts_with("link:") || s.starts_with("workspace:") {
            Some(Origin::Path)
        } else {
            None
        }
    };
    if let Some(o) = probe(version).or_else(|| probe(r)) {
        return o;
    }
    if crate::scan::version::SemVer::parse(version).is_none() {
        return Origin::Url;
    }
    Origin::Registry
}

/// `package-lock.json` and `npm-shrinkwrap.json`.
pub(super) fn package_lock(text: &str, ctx: &FileCtx<'_>) -> Result<Vec<Package>, ParseError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| ParseError::at(Some(e.line() as u32), e.to_string()))?;
    let lines = object_key_lines(text);
    let mut out = Vec::new();
    if let Some(pkgs) = v.get("packages").and_then(Value::as_object) {
        let root = pkgs.get("").map(deps_of).or_else(|| manifest_deps(ctx));
        for (key, entry) in pkgs {
            let Some(idx) = key.rfind("node_modules/") else {
                // The root and workspace folders are the project itself.
                continue;
            };
            if entry.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&key[idx + "node_modules/".len()..]);
            let Some(version) = entry.get("version").and_then(Value::as_str) else {
                continue;
            };
            let top = key == &format!("node_modules/{}", &key[idx + 13..]) && idx == 0;
            let direct = top
                && root
                    .as_ref()
                    .is_none_or(|r| r.contains_key(&key[idx + 13..]));
            let dev = entry.get("dev").and_then(Value::as_bool) == Some(true);
            let resolved = entry.get("resolved").and_then(Value::as_str);
            let line = lines
                .get(&format!("packages{SEP}{key}"))
                .copied()
                .unwrap_or(1);
            out.push(ctx.package(
                "npm",
                name,
                version,
                purl(name, version),
                line,
                direct,
                dev,
                origin_of(version, resolved),
            ));
        }
    } else if let Some(deps) = v.get("dependencies").and_then(Value::as_object) {
        let root = manifest_deps(ctx);
        walk_v1(deps, "dependencies", true, &root, &lines, ctx, &mut out);
    } else if v.get("lockfileVersion").is_none() {
        return Err(ParseError::at(
            Some(1),
            "no `lockfileVersion`, `packages` or `dependencies`",
        ));
    }
    Ok(out)
}

fn walk_v1(
    deps: &serde_json::Map<String, Value>,
    path: &str,
    top: bool,
    root: &Option<HashMap<String, bool>>,
    lines: &HashMap<String, u32>,
    ctx: &FileCtx<'_>,
    out: &mut Vec<Package>,
) {
    for (key, entry) in deps {
        let here = format!("{path}{SEP}{key}");
        let Some(raw) = entry.get("version").and_then(Value::as_str) else {
            continue;
        };
        // Aliases: `"version": "npm:real-name@1.2.3"`.
        let (name, version) = match raw.strip_prefix("npm:").and_then(|r| {
            r.rfind('@')
                .filter(|&i| i > 0)
                .map(|i| (&r[..i], &r[i + 1..]))
        }) {
            Some((n, v)) => (n, v),
            None => (key.as_str(), raw),
        };
        let resolved = entry.get("resolved").and_then(Value::as_str);
        out.push(ctx.package(
            "npm",
            name,
            version,
            purl(name, version),
            lines.get(&here).copied().unwrap_or(1),
            top && root.as_ref().is_none_or(|r| r.contains_key(key)),
            entry.get("dev").and_then(Value::as_bool) == Some(true),
            origin_of(version, resolved),
        ));
        if let Some(nested) = entry.get("dependencies").and_then(Value::as_object) {
            walk_v1(
                nested,
                &format!("{here}{SEP}dependencies"),
                false,
                root,
                lines,
                ctx,
                out,
            );
        }
    }
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')))
        .unwrap_or(s)
}

/// Splits `name@range` at the version `@` (not a scope's leading `@`).
fn split_at_version(spec: &str) -> Option<(&str, &str)> {
    let (i, _) = spec.char_indices().skip(1).find(|(_, c)| *c == '@')?;
    Some((&spec[..i], &spec[i + 1..]))
}

/// `yarn.lock`, classic (v1) and berry (v2+, YAML).
pub(super) fn yarn_lock(text: &str, ctx: &FileCtx<'_>) -> Result<Vec<Package>, ParseError> {
    let manifest = manifest_deps(ctx);
    let mut out = Vec::new();
    struct Block<'a> {
        line: u32,
        specs: Vec<&'a str>,
        version: Option<&'a str>,
        resolution: Option<&'a str>,
        resolved: Option<&'a str>,
    }
    let mut blocks: Vec<Block<'_>> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        if line.is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            let Some(header) = line.strip_suffix(':') else {
                return Err(ParseError::at(
                    Some(i as u32 + 1),
                    format!("unexpected line `{}`", truncate(line)),
                ));
            };
            if header == "__metadata" {
                blocks.push(Block {
                    line: 0,
                    specs: Vec::new(),
                    version: None,
                    resolution: None,
                    resolved: None,
                });
                continue;
            }
            blocks.push(Block {
                line: i as u32 + 1,
                specs: unquote(header)
                    .split(',')
                    .map(|s| unquote(s.trim()))
                    .collect(),
                version: None,
                resolution: None,
                resolved: None,
            });
            continue;
        }
        let Some(b) = blocks.last_mut() else {
            return Err(ParseError::at(
                Some(i as u32 + 1),
                "indented line before any entry",
            ));
        };
        // Fields are at two spaces; deeper lines are dependency lists.
        let Some(field) = line.strip_prefix("  ").filter(|f| !f.starts_with(' ')) else {
            continue;
        };
        let (k, v) = match field.split_once(": ") {
            Some((k, v)) => (k, v),
            None => match field.split_once(' ') {
                Some((k, v)) => (k, v),
                None => continue,
            },
        };
        match unquote(k) {
            "version" => b.version = Some(unquote(v)),
            "resolution" => b.resolution = Some(unquote(v)),
            "resolved" => b.resolved = Some(unquote(v)),
            _ => {}
        }
    }
    for b in blocks {
        let (Some(first), Some(version)) = (b.specs.first(), b.version) else {
            continue;
        };
        let (name, origin) = if let Some(res) = b.resolution {
            // Berry: `name@npm:1.2.3`, `name@workspace:.`, `name@patch:name@npm%3A1.2.3#…`.
            let Some((name, proto)) = split_at_version(res) else {
                continue;
            };
            let origin = if proto.starts_with("npm:") || proto.starts_with("patch:") {
                Origin::Registry
            } else if proto.starts_with("workspace:")
                || proto.starts_with("link:")
                || proto.starts_with("portal:")
                || proto.starts_with("file:")
            {
                continue;
            } else if proto.contains("git") {
                Origin::Git
            } else {
                Origin::Url
            };
            (name, origin)
        } else {
            let Some((name, range)) = split_at_version(first) else {
                continue;
            };
            // Aliases: `alias@npm:real-name@^1.0` resolve to the real package.
            let name = match range.strip_prefix("npm:").and_then(split_at_version) {
                Some((real, _)) => real,
                None => name,
            };
            (name, origin_of(version, b.resolved.or(Some(range))))
        };
        let spec_names: HashSet<&str> = b
            .specs
            .iter()
            .filter_map(|s| split_at_version(s).map(|(n, _)| n))
            .collect();
        let m = manifest.as_ref();
        let direct = m.is_some_and(|m| spec_names.iter().any(|n| m.contains_key(*n)));
        let dev =
            m.is_some_and(|m| spec_names.iter().filter_map(|n| m.get(*n)).all(|d| *d) && direct);
        out.push(ctx.package(
            "npm",
            name,
            version,
            purl(name, version),
            b.line,
            direct,
            dev,
            origin,
        ));
    }
    Ok(out)
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// `pnpm-lock.yaml`, lockfile versions 5.x, 6.x and 9.x.
pub(super) fn pnpm_lock(text: &str, ctx: &FileCtx<'_>) -> Result<Vec<Package>, ParseError> {
    let mut version_major = 0u32;
    let mut section = "";
    // Direct dependencies: (name, version) → dev-only.
    let mut direct: HashMap<(String, String), bool> = HashMap::new();
    let mut dep_kind = "";
    let mut dep_name: Option<String> = None;
    struct Entry {
        key: String,
        line: u32,
        dev: Option<bool>,
        tarball: bool,
    }
    let mut entries: Vec<Entry> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let body = line.trim_start();
        if indent == 0 {
            let (k, v) = body.split_once(':').ok_or_else(|| {
                ParseError::at(
                    Some(i as u32 + 1),
                    format!("unexpected line `{}`", truncate(body)),
                )
            })?;
            section = match k {
                "lockfileVersion" => {
                    let v = unquote(v.trim());
                    version_major = v
                        .split('.')
                        .next()
                        .and_then(|m| m.parse().ok())
                        .unwrap_or(0);
                    ""
                }
                "packages" => "packages",
                "importers" => "importers",
                "dependencies" | "devDependencies" | "optionalDependencies" => {
                    dep_kind = if k == "devDependencies" {
                        "dev"
                    } else {
                        "prod"
                    };
                    "root-deps"
                }
                _ => "",
            };
            continue;
        }
        match section {
            "packages" => {
                if indent == 2 {
                    let key = unquote(body.trim_end_matches(':').trim_end_matches(" {}"));
                    entries.push(Entry {
                        key: key.to_owned(),
                        line: i as u32 + 1,
                        dev: None,
                        tarball: false,
                    });
                } else if indent == 4
                    && let Some(e) = entries.last_mut()
                {
                    if let Some(v) = body.strip_prefix("dev:") {
                        e.dev = Some(v.trim() == "true");
                    } else if body.starts_with("resolution:")
                        && (body.contains("tarball:") || body.contains("directory:"))
                    {
                        e.tarball = true;
                    }
                }
            }
            "importers" | "root-deps" => {
                // importers: 2 = importer, 4 = kind, 6 = name; root deps: 2 = name.
                let (kind_indent, name_indent) = if section == "importers" {
                    (4, 6)
                } else {
                    (0, 2)
                };
                if indent == kind_indent && section == "importers" {
                    let k = body.trim_end_matches(':');
                    dep_kind = match k {
                        "devDependencies" => "dev",
                        "dependencies" | "optionalDependencies" => "prod",
                        _ => "",
                    };
                } else if indent == name_indent && !dep_kind.is_empty() {
                    let (k, v) = body.split_once(':').unwrap_or((body, ""));
                    let name = unquote(k).to_owned();
                    let v = v.trim();
                    if v.is_empty() {
                        dep_name = Some(name);
                    } else {
                        add_direct(&mut direct, &name, unquote(v), dep_kind == "dev");
                        dep_name = None;
                    }
                } else if indent == name_indent + 2
                    && let Some(name) = &dep_name
                    && let Some(v) = body.strip_prefix("version:")
                {
                    add_direct(&mut direct, name, unquote(v.trim()), dep_kind == "dev");
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for e in entries {
        let key = e.key.trim_start_matches('/');
        let key = key.split('(').next().unwrap_or(key);
        let split = if version_major >= 6 {
            split_at_version(key)
        } else {
            key.rfind('/').map(|i| (&key[..i], &key[i + 1..]))
        };
        let Some((name, version)) = split else {
            continue;
        };
        let version = if version_major < 6 {
            version.split('_').next().unwrap_or(version)
        } else {
            version
        };
        let origin = if e.tarball {
            Origin::Url
        } else {
            origin_of(version, None)
        };
        let d = direct.get(&(name.to_owned(), version.to_owned()));
        out.push(ctx.package(
            "npm",
            name,
            version,
            purl(name, version),
            e.line,
            d.is_some(),
            e.dev.unwrap_or(d == Some(&true)),
            origin,
        ));
    }
    Ok(out)
}

fn add_direct(direct: &mut HashMap<(String, String), bool>, name: &str, version: &str, dev: bool) {
    let v = version.split('(').next().unwrap_or(version).to_owned();
    let e = direct.entry((name.to_owned(), v)).or_insert(dev);
    // Production wins over dev when both list it.
    *e = *e && dev;
}
