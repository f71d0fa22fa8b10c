//! `Gemfile.lock`: `GEM` sections' `specs:` (four-space `name (version[-platform])` lines;
//! six-space lines are their dependencies), `GIT` and `PATH` sections for non-registry gems,
//! and `DEPENDENCIES` for the direct ones.

use std::collections::HashSet;

use super::{FileCtx, Origin, Package, ParseError, purl_enc};

/// `Gemfile.lock`.
pub(super) fn gemfile_lock(text: &str, ctx: &FileCtx<'_>) -> Result<Vec<Package>, ParseError> {
    let mut section = "";
    let mut found: Vec<(String, String, u32, Origin)> = Vec::new();
    let mut direct: HashSet<String> = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        if line.is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            section = match line {
                "GEM" => "GEM",
                "GIT" => "GIT",
                "PATH" => "PATH",
                "DEPENDENCIES" => "DEPENDENCIES",
                _ => "",
            };
            continue;
        }
        match section {
            "GEM" | "GIT" | "PATH" => {
                let Some(spec) = line.strip_prefix("    ").filter(|s| !s.starts_with(' ')) else {
                    continue;
                };
                let Some((name, rest)) = spec.split_once(" (") else {
                    return Err(ParseError::at(
                        Some(i as u32 + 1),
                        format!("expected `name (version)`, found `{spec}`"),
                    ));
                };
                let version = rest.trim_end_matches(')');
                // Platform gems: `nokogiri (1.16.0-x86_64-linux)`.
                let version = split_platform(version);
                let origin = match section {
                    "GIT" => Origin::Git,
                    "PATH" => Origin::Path,
                    _ => Origin::Registry,
                };
                found.push((name.to_owned(), version.to_owned(), i as u32 + 1, origin));
            }
            "DEPENDENCIES" => {
                let name = line.trim().split([' ', '!']).next().unwrap_or("");
                direct.insert(name.to_owned());
            }
            _ => {}
        }
    }
    found.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    Ok(found
        .into_iter()
        .map(|(name, version, line, origin)| {
            ctx.package(
                "RubyGems",
                &name,
                &version,
                format!("pkg:gem/{}@{}", purl_enc(&name), purl_enc(&version)),
                line,
                direct.contains(&name),
                false,
                origin,
            )
        })
        .collect())
}

fn split_platform(v: &str) -> &str {
    // A version never contains `-`; the rest is the platform.
    v.split_once('-').map_or(v, |(ver, _)| ver)
}
