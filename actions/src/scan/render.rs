//! Outputs rendered from the report: `table` (terminal), `markdown` (step summary), `sarif`
//! (GitHub code scanning), `cyclonedx` (the inventory as an SBOM) and `json` (the report).
//!
//! Human outputs show what `--severity` lets through; JSON keeps every finding because it is
//! the evidence promotion gates read.

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::osv::Kind;
use super::report::{Finding, Report};
use super::severity::Severity;

/// Renders one output format into a writer.
pub fn write(
    format: super::Format,
    report: &Report,
    color: bool,
    w: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    use super::Format;
    match format {
        // The report streams straight into the writer: no string of several hundred
        // kilobytes is built (measurable in the whole-process time of a scan).
        Format::Json => {
            // A buffer of our own: serde_json writes token by token, and through `dyn Write`
            // each token would be a dynamic call.
            let mut buf = std::io::BufWriter::with_capacity(64 * 1024, w);
            serde_json::to_writer_pretty(&mut buf, report).map_err(std::io::Error::other)?;
            buf.write_all(b"\n")?;
            buf.flush()
        }
        Format::Table => w.write_all(table(report, color).as_bytes()),
        Format::Sarif => w.write_all(sarif(report).as_bytes()),
        Format::Markdown => w.write_all(markdown(report).as_bytes()),
        Format::Cyclonedx => w.write_all(cyclonedx(report).as_bytes()),
    }
}

/// The JSON report, pretty-printed with a final newline.
pub fn json(report: &Report) -> String {
    let mut buf = Vec::new();
    let _ = write(super::Format::Json, report, false, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

fn shown(report: &Report) -> Vec<&Finding> {
    report
        .findings
        .iter()
        .filter(|f| f.shown(report.policy.severity))
        .collect()
}

/// `1 file`, `2 files`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn fixed_text(f: &Finding) -> String {
    if f.fixed.is_empty() {
        "no fix".into()
    } else {
        f.fixed.join(", ")
    }
}

fn sev_text(f: &Finding) -> String {
    if f.kind.by_severity() {
        f.severity.as_str().to_owned()
    } else {
        f.kind.as_str().to_owned()
    }
}

/// ANSI styles for the table, empty without colour.
struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    fn severity(&self, f: &Finding, text: &str) -> String {
        let code = match (f.kind.by_severity(), f.severity) {
            (true, Severity::Critical) => "1;31",
            (true, Severity::High) => "31",
            (true, Severity::Medium) => "33",
            (true, _) => "36",
            _ => "35",
        };
        self.wrap(code, text)
    }
}

/// The terminal table.
pub fn table(report: &Report, color: bool) -> String {
    let p = Paint { on: color };
    let all = shown(report);
    let pkgs: Vec<&Finding> = all
        .iter()
        .copied()
        .filter(|f| f.package.is_some())
        .collect();
    let rows: Vec<Vec<String>> = pkgs
        .iter()
        .filter_map(|f| {
            let pk = f.package.as_ref()?;
            Some(vec![
                location_text(f),
                pk.name.clone(),
                pk.version.clone(),
                f.id.clone(),
                sev_text(f),
                fixed_text(f),
            ])
        })
        .collect();
    let mut out = String::new();
    grid(
        &mut out,
        &p,
        &[
            "LOCATION", "PACKAGE", "VERSION", "ADVISORY", "SEVERITY", "FIXED",
        ],
        &rows,
        &pkgs,
    );
    let secrets: Vec<&Finding> = all
        .iter()
        .copied()
        .filter(|f| f.kind == Kind::Secret)
        .collect();
    let rows: Vec<Vec<String>> = secrets
        .iter()
        .map(|f| {
            vec![
                location_text(f),
                f.id.clone(),
                sev_text(f),
                f.secret
                    .as_ref()
                    .map(|s| s.redacted.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    grid(
        &mut out,
        &p,
        &["LOCATION", "SECRET", "SEVERITY", "MATCH"],
        &rows,
        &secrets,
    );
    let checks: Vec<&Finding> = all
        .iter()
        .copied()
        .filter(|f| f.kind == Kind::Misconfig)
        .collect();
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|f| {
            vec![
                location_text(f),
                f.id.clone(),
                sev_text(f),
                f.check
                    .as_ref()
                    .map(|c| c.message.clone())
                    .unwrap_or_else(|| f.summary.clone()),
            ]
        })
        .collect();
    grid(
        &mut out,
        &p,
        &["LOCATION", "CHECK", "SEVERITY", "MESSAGE"],
        &rows,
        &checks,
    );
    let s = &report.summary;
    let hidden = report
        .findings
        .iter()
        .filter(|f| f.suppressed_by.is_none() && !f.shown(report.policy.severity))
        .count();
    if report.db.is_some() {
        let _ = write!(
            out,
            "{} in {}; ",
            count(s.packages, "package"),
            count(report.files.len(), "file"),
        );
    }
    let _ = write!(
        out,
        "{} ({} suppressed",
        count(s.findings, "finding"),
        s.suppressed
    );
    if hidden > 0 {
        let _ = write!(out, ", {hidden} below {}", report.policy.severity.as_str());
    }
    if s.in_baseline > 0 {
        let _ = write!(out, ", {} in baseline", s.in_baseline);
    }
    let verdict = if report.result == "pass" {
        p.wrap("1;32", "pass")
    } else {
        p.wrap("1;31", "fail")
    };
    let _ = writeln!(out, "); {} fail the policy: {verdict}", s.gated);
    out
}

fn location_text(f: &Finding) -> String {
    let mut s = format!("{}:{}", f.location.path, f.location.start_line);
    if let Some(l) = &f.layer {
        let short = l.strip_prefix("sha256:").unwrap_or(l);
        s.push_str(&format!(" ({})", &short[..short.len().min(12)]));
    }
    s
}

/// One table: header, rows, severity in the column named `SEVERITY`.
fn grid(out: &mut String, p: &Paint, header: &[&str], rows: &[Vec<String>], findings: &[&Finding]) {
    if rows.is_empty() {
        return;
    }
    let sev_col = header.iter().position(|h| *h == "SEVERITY");
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    // Pads by the plain text width, then paints: colour codes take no columns.
    let line = |cells: &[String], paint: &dyn Fn(usize, &str) -> String| -> String {
        let mut s = String::new();
        for (k, c) in cells.iter().enumerate() {
            s.push_str(&paint(k, c));
            if k + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[k].saturating_sub(c.chars().count()) + 2));
            }
        }
        s.trim_end().to_owned()
    };
    let h: Vec<String> = header.iter().map(|s| (*s).to_owned()).collect();
    let _ = writeln!(out, "{}", line(&h, &|_, c| p.wrap("1", c)));
    for (r, f) in rows.iter().zip(findings) {
        let paint = |k: usize, c: &str| {
            if Some(k) == sev_col {
                p.severity(f, c)
            } else {
                c.to_owned()
            }
        };
        let _ = writeln!(out, "{}", line(r, &paint));
    }
    out.push('\n');
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The markdown summary (for `$GITHUB_STEP_SUMMARY`).
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let s = &report.summary;
    let icon = if report.result == "pass" {
        "✅"
    } else {
        "❌"
    };
    let _ = writeln!(out, "## {icon} pipe scan: {}\n", report.result);
    let _ = writeln!(
        out,
        "{} in {} · {} · {} suppressed · {} fail the policy (`fail-on: {}`)\n",
        count(s.packages, "package"),
        count(report.files.len(), "file"),
        count(s.findings, "finding"),
        s.suppressed,
        s.gated,
        report.policy.fail_on.map_or("none", |x| x.as_str())
    );
    let _ = writeln!(
        out,
        "| CRITICAL | HIGH | MEDIUM | LOW | UNKNOWN | unsound | unmaintained | notice |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    let sev = |x: Severity| s.by_severity.get(&x).copied().unwrap_or(0);
    let kind = |x: Kind| s.by_kind.get(&x).copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
        sev(Severity::Critical),
        sev(Severity::High),
        sev(Severity::Medium),
        sev(Severity::Low),
        sev(Severity::Unknown),
        kind(Kind::Unsound),
        kind(Kind::Unmaintained),
        kind(Kind::Notice)
    );
    let rows = shown(report);
    if rows.iter().any(|f| f.package.is_some()) {
        let _ = writeln!(
            out,
            "| | Package | Version | Advisory | Severity | Fixed in | Location |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for f in &rows {
            let Some(pk) = &f.package else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | {} | {} | `{}:{}` |",
                if f.gated { "❌" } else { "" },
                md_escape(&pk.name),
                md_escape(&pk.version),
                md_escape(&f.id),
                sev_text(f),
                md_escape(&fixed_text(f)),
                md_escape(&f.location.path),
                f.location.start_line
            );
        }
        out.push('\n');
    }
    for (kind, title, col) in [
        (Kind::Secret, "Secrets", "Match"),
        (Kind::Misconfig, "Misconfigurations", "Problem"),
    ] {
        let these: Vec<&&Finding> = rows.iter().filter(|f| f.kind == kind).collect();
        if these.is_empty() {
            continue;
        }
        let _ = writeln!(out, "**{title}**\n");
        let _ = writeln!(out, "| | Rule | Severity | {col} | Location |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for f in these {
            let what = match (&f.secret, &f.check) {
                (Some(s), _) => format!("`{}`", md_escape(&s.redacted)),
                (_, Some(c)) => md_escape(&c.message),
                _ => md_escape(&f.summary),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {what} | `{}:{}` |",
                if f.gated { "❌" } else { "" },
                md_escape(&f.id),
                sev_text(f),
                md_escape(&f.location.path),
                f.location.start_line
            );
        }
        out.push('\n');
    }
    if !report.warnings.is_empty() {
        let _ = writeln!(
            out,
            "<details><summary>{} warnings</summary>\n",
            report.warnings.len()
        );
        for w in &report.warnings {
            let _ = writeln!(out, "- {}", md_escape(&w.to_string()));
        }
        let _ = writeln!(out, "\n</details>");
    }
    if let Some(db) = &report.db {
        let _ = writeln!(out, "\nAdvisory database `{}`", db.digest);
    }
    out
}

fn security_severity(f: &Finding, unknown_as: Severity) -> f64 {
    f.cvss
        .as_ref()
        .map(|c| c.score)
        .unwrap_or_else(|| f.effective_severity(unknown_as).nominal_score())
}

/// SARIF 2.1.0 for GitHub code scanning: one rule per advisory, results at the lockfile line,
/// stable `partialFingerprints`.
pub fn sarif(report: &Report) -> String {
    let rows = shown(report);
    let unknown_as = report.policy.unknown_severity_as;
    let mut rule_ids: Vec<&str> = rows.iter().map(|f| f.id.as_str()).collect();
    rule_ids.sort();
    rule_ids.dedup();
    let rules: Vec<Value> = rule_ids
        .iter()
        .filter_map(|id| rows.iter().find(|f| f.id == *id))
        .map(|f| {
            if f.package.is_none() {
                return detection_rule(f);
            }
            let eco = f.package.as_ref().map_or("", |p| p.ecosystem.as_str());
            let name = f.package.as_ref().map_or("", |p| p.name.as_str());
            let mut props = json!({
                "tags": ["security", f.kind.as_str(), eco],
                "precision": "very-high",
            });
            if f.kind == Kind::Vulnerability {
                props["security-severity"] =
                    Value::String(format!("{:.1}", security_severity(f, unknown_as)));
            }
            let aliases = if f.aliases.is_empty() {
                String::new()
            } else {
                format!(" (also {})", f.aliases.join(", "))
            };
            let title = if f.summary.is_empty() || f.summary == f.id {
                format!("{}{aliases}: {} in {}", f.id, f.kind.as_str(), name)
            } else {
                format!("{}{aliases}: {}", f.id, f.summary)
            };
            let fix = if f.fixed.is_empty() {
                "No fixed version is known.".to_owned()
            } else {
                format!("Upgrade `{}` to {}.", name, f.fixed.join(" or "))
            };
            json!({
                "id": f.id,
                "name": f.id.replace('-', ""),
                "shortDescription": {"text": title},
                "fullDescription": {"text": title},
                "help": {
                    "text": format!("{title}\nSeverity: {} ({})\n{fix}", f.severity.as_str(), f.severity_source),
                    "markdown": format!(
                        "**{}**{aliases}\n\n| Severity | Source | Affected |\n|---|---|---|\n| {} | {} | {} |\n\n{fix}",
                        f.id,
                        f.severity.as_str(),
                        f.severity_source,
                        md_escape(&f.affected.join("; "))
                    ),
                },
                "defaultConfiguration": {"level": level(f)},
                "properties": props,
            })
        })
        .collect();
    let results: Vec<Value> = rows
        .iter()
        .map(|f| {
            let idx = rule_ids.iter().position(|r| *r == f.id).unwrap_or(0);
            let fix = if f.fixed.is_empty() {
                "no fixed version".to_owned()
            } else {
                format!("fixed in {}", f.fixed.join(", "))
            };
            let message = match (&f.package, &f.secret, &f.check) {
                (Some(pk), _, _) => format!(
                    "{} {} is affected by {} ({}); {fix}",
                    pk.name,
                    pk.version,
                    f.id,
                    sev_text(f)
                ),
                (None, Some(sec), _) => {
                    format!("{} ({}): `{}`", sec.rule, sev_text(f), sec.redacted)
                }
                (None, None, Some(c)) => format!("{} ({})", c.message, sev_text(f)),
                _ => f.summary.clone(),
            };
            let mut region =
                json!({"startLine": f.location.start_line, "endLine": f.location.end_line});
            if let Some(sec) = &f.secret {
                region["startColumn"] = json!(sec.column);
            }
            let mut props = json!({"gated": f.gated});
            if let Some(pk) = &f.package {
                props["purl"] = json!(pk.purl);
            }
            if let Some(l) = &f.layer {
                props["layer"] = json!(l);
            }
            json!({
                "ruleId": f.id,
                "ruleIndex": idx,
                "level": level(f),
                "message": {"text": message},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {
                        "uri": sarif_uri(&report.target.path, &f.location.path),
                        "uriBaseId": "%SRCROOT%",
                    },
                    "region": region,
                }}],
                "partialFingerprints": {"pipeScan/v1": f.fingerprint},
                "properties": props,
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "pipe-scan",
                "version": report.tool.version,
                "informationUri": "https://github.com/pipe-ci/pipe",
                "rules": rules,
            }},
            // One category per scanned directory, so runs over different targets do not
            // replace each other's alerts.
            "automationDetails": {"id": format!("pipe-scan/{}/{}", report.scanners.join("-"), sarif_uri(&report.target.path, ""))},
            "originalUriBaseIds": {"%SRCROOT%": {"description": {"text": "the scanned directory"}}},
            "results": results,
        }],
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

/// A finding's file as SARIF wants it: relative to the checkout. Locations in the report
/// are relative to the scanned directory, so a relative target (`services/api`) is put in
/// front; run pipe from the repository root for GitHub to find the files.
fn sarif_uri(target: &str, path: &str) -> String {
    let t = target.trim_start_matches("./").trim_end_matches('/');
    if t.is_empty() || t == "." || t.starts_with('/') {
        return path.to_owned();
    }
    // A single lockfile as the target: its location path is its own name.
    if t == path || t.ends_with(&format!("/{path}")) {
        return t.to_owned();
    }
    format!("{t}/{path}")
}

fn level(f: &Finding) -> &'static str {
    match (f.kind.by_severity(), f.severity) {
        (true, Severity::Critical | Severity::High) => "error",
        (true, _) => "warning",
        _ => "note",
    }
}

/// The SARIF rule of a secret or misconfiguration.
fn detection_rule(f: &Finding) -> Value {
    let help = match (&f.secret, &f.check) {
        (Some(_), _) => "Remove the secret from the file (and from history), rotate it, and load it from a secret store at run time.".to_owned(),
        (_, Some(c)) => c.resolution.clone(),
        _ => String::new(),
    };
    let aliases = if f.aliases.is_empty() {
        String::new()
    } else {
        format!(" (also {})", f.aliases.join(", "))
    };
    let title = format!("{}{aliases}: {}", f.id, f.summary);
    json!({
        "id": f.id,
        "name": f.id.replace('-', ""),
        "shortDescription": {"text": title},
        "fullDescription": {"text": title},
        "help": {
            "text": format!("{title}\nSeverity: {}\n{help}", f.severity.as_str()),
            "markdown": format!("**{}**{aliases}: {}\n\nSeverity: {}\n\n{help}", f.id, md_escape(&f.summary), f.severity.as_str()),
        },
        "defaultConfiguration": {"level": level(f)},
        "properties": {
            "tags": ["security", f.kind.as_str()],
            "precision": "high",
            "security-severity": format!("{:.1}", f.severity.nominal_score()),
        },
    })
}

/// The inventory as a CycloneDX 1.6 JSON SBOM. The serial number is derived from the
/// content, so the same inventory gives the same document.
pub fn cyclonedx(report: &Report) -> String {
    let mut by_purl: std::collections::BTreeMap<&str, Vec<&super::inventory::Package>> =
        std::collections::BTreeMap::new();
    for p in &report.packages {
        by_purl.entry(p.purl.as_str()).or_default().push(p);
    }
    let components: Vec<Value> = by_purl
        .iter()
        .map(|(purl, pkgs)| {
            let p = pkgs[0];
            let mut props = vec![
                json!({"name": "pipe:ecosystem", "value": p.ecosystem}),
                json!({"name": "pipe:origin", "value": serde_json::to_value(p.origin).unwrap_or(Value::Null)}),
                json!({"name": "pipe:direct", "value": pkgs.iter().any(|x| x.direct).to_string()}),
                json!({"name": "pipe:dev", "value": pkgs.iter().all(|x| x.dev).to_string()}),
            ];
            for x in pkgs {
                props.push(json!({"name": "pipe:location", "value": format!("{}:{}", x.source_file, x.line)}));
                if let Some(l) = &x.layer {
                    props.push(json!({"name": "pipe:layer", "value": l}));
                }
            }
            json!({
                "type": "library",
                "bom-ref": purl,
                "name": p.name,
                "version": p.version,
                "purl": purl,
                "scope": if pkgs.iter().all(|x| x.dev) { "optional" } else { "required" },
                "properties": props,
            })
        })
        .collect();
    let mut h = Sha256::new();
    for c in by_purl.keys() {
        h.update(c.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    let hexs = hex::encode(&d[..16]);
    // A version-5-style UUID from the content digest.
    let serial = format!(
        "urn:uuid:{}-{}-5{}-{}{}-{}",
        &hexs[0..8],
        &hexs[8..12],
        &hexs[13..16],
        ["8", "9", "a", "b"][usize::from(d[8] & 3)],
        &hexs[17..20],
        &hexs[20..32]
    );
    let doc = json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial,
        "version": 1,
        "metadata": {
            "tools": {"components": [{"type": "application", "name": "pipe", "version": report.tool.version}]},
            "component": {"type": "application", "bom-ref": "target", "name": report.target.path},
        },
        "components": components,
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::sarif_uri;

    #[test]
    fn sarif_uris_are_relative_to_where_pipe_ran() {
        assert_eq!(sarif_uri(".", "a/Cargo.lock"), "a/Cargo.lock");
        assert_eq!(sarif_uri("./svc/", "Cargo.lock"), "svc/Cargo.lock");
        assert_eq!(sarif_uri("svc/Cargo.lock", "Cargo.lock"), "svc/Cargo.lock");
        assert_eq!(sarif_uri("/abs/dir", "Cargo.lock"), "Cargo.lock");
        assert_eq!(sarif_uri(".", ""), "");
        assert_eq!(sarif_uri("svc", ""), "svc/");
    }
}
