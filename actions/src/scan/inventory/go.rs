//! Go: `go.mod` (the build list since Go 1.17: direct requirements and `// indirect` ones,
//! with `replace` directives applied) and `go.sum` when no `go.mod` stands beside it (it also
//! lists modules whose `go.mod` was only consulted, so it over-reports). The `toolchain`
//! directive adds the Go distribution as package `stdlib`.

use std::collections::HashMap;

use super::{FileCtx, Origin, Package, ParseError, purl_enc};

/// `pkg:golang/path@version` with the path's segments kept.
fn purl(path: &str, version: &str) -> String {
    let p: Vec<String> = path.split('/').map(purl_enc).collect();
    format!("pkg:golang/{}@{}", p.join("/"), purl_enc(version))
}

fn strip_comment(line: &str) -> (&str, bool) {
    match line.find("//") {
        Some(i) => (
            &line[..i],
            line[i + 2..].trim_start().starts_with("indirect"),
        ),
        None => (line, false),
    }
}

fn unquote(s: &str) -> &str {
    s.trim().trim_matches('"').trim_matches('`')
}

/// `replace` directives: (path, version or `None` for all) → new (path, version), or `None`
/// for a local directory.
type Replaces = HashMap<(String, Option<String>), Option<(String, String)>>;

/// `go.mod`.
pub(super) fn go_mod(text: &str, ctx: &FileCtx<'_>) -> Result<Vec<Package>, ParseError> {
    struct Req {
        path: String,
        version: String,
        line: u32,
        indirect: bool,
    }
    let mut reqs: Vec<Req> = Vec::new();
    // replace: (path, Some(version) | None for all versions) → Some((new path, new version))
    // or None for a local directory.
    let mut replaces: Replaces = HashMap::new();
    let mut toolchain: Option<(String, u32)> = None;
    let mut block: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let lineno = i as u32 + 1;
        let (line, indirect) = strip_comment(raw);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (verb, rest) = match &block {
            Some(b) => {
                if line == ")" {
                    block = None;
                    continue;
                }
                (b.clone(), line)
            }
            None => {
                let (verb, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                let rest = rest.trim();
                if rest == "(" {
                    block = Some(verb.to_owned());
                    continue;
                }
                (verb.to_owned(), rest)
            }
        };
        match verb.as_str() {
            "require" => {
                let mut parts = rest.split_whitespace();
                let (Some(path), Some(version)) = (parts.next(), parts.next()) else {
                    return Err(ParseError::at(
                        Some(lineno),
                        format!("bad require `{rest}`"),
                    ));
                };
                reqs.push(Req {
                    path: unquote(path).to_owned(),
                    version: unquote(version).to_owned(),
                    line: lineno,
                    indirect,
                });
            }
            "replace" => {
                let Some((old, new)) = rest.split_once("=>") else {
                    return Err(ParseError::at(
                        Some(lineno),
                        format!("bad replace `{rest}`"),
                    ));
                };
                let mut o = old.split_whitespace();
                let mut n = new.split_whitespace();
                let (Some(op), ov) = (o.next(), o.next()) else {
                    continue;
                };
                let target = match (n.next(), n.next()) {
                    (Some(np), Some(nv)) => Some((unquote(np).to_owned(), unquote(nv).to_owned())),
                    _ => None,
                };
                replaces.insert(
                    (unquote(op).to_owned(), ov.map(|v| unquote(v).to_owned())),
                    target,
                );
            }
            "toolchain" => toolchain = Some((rest.to_owned(), lineno)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for r in reqs {
        let rep = replaces
            .get(&(r.path.clone(), Some(r.version.clone())))
            .or_else(|| replaces.get(&(r.path.clone(), None)));
        let (path, version, origin) = match rep {
            Some(Some((p, v))) => (p.clone(), v.clone(), Origin::Registry),
            Some(None) => (r.path.clone(), r.version.clone(), Origin::Path),
            None => (r.path.clone(), r.version.clone(), Origin::Registry),
        };
        out.push(ctx.package(
            "Go",
            &path,
            &version,
            purl(&path, &version),
            r.line,
            !r.indirect,
            false,
            origin,
        ));
    }
    if let Some((tc, line)) = toolchain
        && let Some(v) = tc.strip_prefix("go")
    {
        let v = format!("v{v}");
        out.push(ctx.package(
            "Go",
            "stdlib",
            &v,
            purl("stdlib", &v),
            line,
            true,
            false,
            Origin::Registry,
        ));
    }
    Ok(out)
}

/// `go.sum`.
pub(super) fn go_sum(text: &str, ctx: &FileCtx<'_>) -> Result<Vec<Package>, ParseError> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let mut parts = raw.split_whitespace();
        let (Some(path), Some(version), Some(_hash)) = (parts.next(), parts.next(), parts.next())
        else {
            if raw.trim().is_empty() {
                continue;
            }
            return Err(ParseError::at(
                Some(i as u32 + 1),
                "expected `module version hash`",
            ));
        };
        if version.ends_with("/go.mod") || !seen.insert((path, version)) {
            continue;
        }
        out.push(ctx.package(
            "Go",
            path,
            version,
            purl(path, version),
            i as u32 + 1,
            false,
            false,
            Origin::Registry,
        ));
    }
    Ok(out)
}
