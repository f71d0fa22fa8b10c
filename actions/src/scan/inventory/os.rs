//! OS package databases: dpkg's `var/lib/dpkg/status` (and distroless `status.d/*`) and
//! apk's `lib/apk/db/installed`. Advisories are keyed by the *source* package and its
//! version, so each package remembers both; the release (`Debian:12`, `Alpine:v3.19`) comes
//! from `etc/os-release` / `etc/alpine-release` of the same root.

use std::path::Path;

use super::{FileCtx, Origin, Package, ParseError, purl_enc};
use crate::scan::Warning;

/// The root of an OS tree holding `rel` (the path up to `var/lib/dpkg` or `lib/apk`).
fn os_root(root: &Path, rel: &str, marker: &str) -> std::path::PathBuf {
    let prefix = match rel.find(marker) {
        Some(i) => &rel[..i],
        None => "",
    };
    root.join(prefix)
}

fn os_release(dir: &Path) -> Option<(String, String, bool)> {
    let text = std::fs::read_to_string(dir.join("etc/os-release"))
        .or_else(|_| std::fs::read_to_string(dir.join("usr/lib/os-release")))
        .ok()?;
    let mut id = String::new();
    let mut version_id = String::new();
    let mut lts = false;
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches('"').to_owned();
            match k.trim() {
                "ID" => id = v,
                "VERSION_ID" => version_id = v,
                "VERSION" => lts = v.contains("LTS"),
                _ => {}
            }
        }
    }
    Some((id, version_id, lts))
}

fn paragraphs(text: &str) -> Vec<(u32, Vec<(String, String)>)> {
    let mut out = Vec::new();
    let mut cur: Vec<(String, String)> = Vec::new();
    let mut start = 0u32;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push((start, std::mem::take(&mut cur)));
            }
            continue;
        }
        if cur.is_empty() {
            start = i as u32 + 1;
        }
        if line.starts_with([' ', '\t']) {
            continue; // continuation of a multi-line field
        }
        if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    if !cur.is_empty() {
        out.push((start, cur));
    }
    out
}

fn field<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

/// dpkg status.
pub(super) fn dpkg(
    text: &str,
    ctx: &FileCtx<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<Package>, ParseError> {
    let root = os_root(ctx.root, ctx.rel, "var/lib/dpkg/");
    let (distro, ecosystem) = match os_release(&root) {
        Some((id, ver, lts)) if id == "ubuntu" => (
            format!("ubuntu-{ver}"),
            format!("Ubuntu:{ver}{}", if lts { ":LTS" } else { "" }),
        ),
        Some((id, ver, _)) if id == "debian" && !ver.is_empty() => {
            (format!("debian-{ver}"), format!("Debian:{ver}"))
        }
        _ => {
            warnings.push(Warning::at(
                "os-release-missing",
                ctx.rel,
                None,
                "no `etc/os-release` naming the Debian release; matching against `Debian`".into(),
            ));
            ("debian".to_owned(), "Debian".to_owned())
        }
    };
    let vendor = if ecosystem.starts_with("Ubuntu") {
        "ubuntu"
    } else {
        "debian"
    };
    let mut out = Vec::new();
    for (line, p) in paragraphs(text) {
        let (Some(name), Some(version)) = (field(&p, "Package"), field(&p, "Version")) else {
            return Err(ParseError::at(
                Some(line),
                "paragraph without `Package` or `Version`",
            ));
        };
        if field(&p, "Status").is_some_and(|s| !s.ends_with(" installed")) {
            continue;
        }
        let arch = field(&p, "Architecture").unwrap_or("");
        let (src_name, src_version) = match field(&p, "Source") {
            Some(s) => match s.split_once(" (") {
                Some((n, v)) => (n.trim().to_owned(), v.trim_end_matches(')').to_owned()),
                None => (s.trim().to_owned(), version.to_owned()),
            },
            None => (name.to_owned(), version.to_owned()),
        };
        let mut pkg = ctx.package(
            &ecosystem,
            name,
            version,
            format!(
                "pkg:deb/{vendor}/{}@{}?arch={}&distro={distro}",
                purl_enc(name),
                purl_enc(version),
                purl_enc(arch)
            ),
            line,
            true,
            false,
            Origin::Registry,
        );
        pkg.source_package = Some((src_name, src_version));
        out.push(pkg);
    }
    Ok(out)
}

/// apk installed database.
pub(super) fn apk(
    text: &str,
    ctx: &FileCtx<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<Package>, ParseError> {
    let root = os_root(ctx.root, ctx.rel, "lib/apk/db/");
    let release = std::fs::read_to_string(root.join("etc/alpine-release"))
        .ok()
        .and_then(|r| {
            let mut it = r.trim().split('.');
            Some(format!("v{}.{}", it.next()?, it.next()?))
        });
    let ecosystem = match &release {
        Some(r) => format!("Alpine:{r}"),
        None => {
            warnings.push(Warning::at(
                "os-release-missing",
                ctx.rel,
                None,
                "no `etc/alpine-release`; Alpine advisories need the release, matching against `Alpine`"
                    .into(),
            ));
            "Alpine".to_owned()
        }
    };
    let mut out = Vec::new();
    for (line, p) in paragraphs(text) {
        let (Some(name), Some(version)) = (field(&p, "P"), field(&p, "V")) else {
            return Err(ParseError::at(Some(line), "entry without `P:` or `V:`"));
        };
        let arch = field(&p, "A").unwrap_or("");
        let origin = field(&p, "o").unwrap_or(name);
        let mut pkg = ctx.package(
            &ecosystem,
            name,
            version,
            format!(
                "pkg:apk/alpine/{}@{}?arch={}{}",
                purl_enc(name),
                purl_enc(version),
                purl_enc(arch),
                release
                    .as_ref()
                    .map(|r| format!("&distro={}", r.trim_start_matches('v')))
                    .unwrap_or_default()
            ),
            line,
            true,
            false,
            Origin::Registry,
        );
        pkg.source_package = Some((origin.to_owned(), version.to_owned()));
        out.push(pkg);
    }
    Ok(out)
}
