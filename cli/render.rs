//! Renders diagnostics: the human form (decisions.md "Diagnostics"), JSON and SARIF 2.1.0.
//!
//! The first line of each human block is machine-greppable and matches actionlint's form,
//! `FILE:LINE:COL: message [rule-id]`; the source line, a caret run and an optional hint follow,
//! indented so that no continuation line starts with `FILE:`.

use pipe_runner::diag::{Diagnostic, Severity};
use pipe_runner::source::SourceMap;
use serde_json::{Value, json};

use crate::output::Styles;

/// Renders one diagnostic for humans.
pub fn human(diag: &Diagnostic, sources: &SourceMap, styles: &Styles) -> String {
    let file = sources.get(diag.span.file);
    let start = file.line_col(diag.span.start);
    let end = file.line_col(diag.span.end);
    let path = file.path().display().to_string();
    let msg_style = match diag.severity {
        Severity::Error => styles.error,
        Severity::Lint => styles.warning,
    };
    let mut out = format!(
        "{}: {} {}\n",
        styles.paint(styles.bold, &format!("{path}:{}:{}", start.line, start.col)),
        styles.paint(msg_style, &diag.message),
        styles.paint(styles.dim, &format!("[{}]", diag.rule)),
    );
    let line = file.line_text(start.line);
    let gutter = start.line.to_string().len();
    let pad = " ".repeat(gutter + 2);
    if !line.is_empty() || file.line_count() > 1 {
        // The caret run: as wide as the span on its first line, at least one character.
        let prefix: String = line
            .chars()
            .take(start.col.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let line_chars = line.chars().count();
        let width = if end.line == start.line && end.col > start.col {
            end.col - start.col
        } else {
            line_chars.saturating_sub(start.col - 1).max(1)
        };
        let shown = truncate(line, 160);
        out.push_str(&format!("{pad}{}\n", styles.paint(styles.dim, "|")));
        out.push_str(&format!(
            " {} {} {shown}\n",
            styles.paint(styles.dim, &start.line.to_string()),
            styles.paint(styles.dim, "|")
        ));
        out.push_str(&format!(
            "{pad}{} {prefix}{}\n",
            styles.paint(styles.dim, "|"),
            styles.paint(msg_style, &"^".repeat(width.min(160)))
        ));
    }
    if let Some(hint) = &diag.hint {
        out.push_str(&format!(
            "{pad}{} {hint}\n",
            styles.paint(styles.hint, "= hint:")
        ));
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max).collect();
    t.push('…');
    t
}

fn location(diag: &Diagnostic, sources: &SourceMap) -> (String, usize, usize, usize, usize) {
    let file = sources.get(diag.span.file);
    let s = file.line_col(diag.span.start);
    let e = file.line_col(diag.span.end);
    (
        file.path().display().to_string(),
        s.line,
        s.col,
        e.line,
        e.col,
    )
}

/// One diagnostic as a JSON object.
pub fn json_one(diag: &Diagnostic, sources: &SourceMap) -> Value {
    let (file, line, col, end_line, end_col) = location(diag, sources);
    json!({
        "file": file,
        "line": line,
        "column": col,
        "end_line": end_line,
        "end_column": end_col,
        "severity": match diag.severity { Severity::Error => "error", Severity::Lint => "warning" },
        "rule": diag.rule,
        "message": diag.message,
        "hint": diag.hint,
    })
}

/// All diagnostics as a JSON array.
pub fn json_all(diags: &[Diagnostic], sources: &SourceMap) -> Value {
    Value::Array(diags.iter().map(|d| json_one(d, sources)).collect())
}

/// Short descriptions of rule ids, for SARIF `rules`.
fn rule_description(rule: &str) -> &'static str {
    match rule {
        "syntax-check" => "YAML syntax and workflow schema",
        "expression" => "expression syntax, contexts, properties and functions",
        "job-needs" => "job dependencies: unknown jobs and cycles",
        "matrix" => "matrix vectors, include and exclude",
        "runner-label" => "runner labels",
        "action" => "`uses:` syntax and action inputs",
        "events" => "events, activity types, filters and inputs",
        "glob" => "glob patterns in filters",
        "id" => "job and step ids",
        "shell-name" => "shell names",
        "env-var" => "environment variable names",
        "permissions" => "permission scopes and levels",
        "workflow-call" => "reusable workflow calls",
        "if-cond" => "`if:` conditions that are always true",
        "credentials" => "hard-coded credentials",
        "deprecated-commands" => "deprecated workflow commands",
        "pipe-extension" => "pipe extension keys GitHub rejects",
        _ => "pipe check",
    }
}

/// All diagnostics as a SARIF 2.1.0 log.
pub fn sarif(diags: &[Diagnostic], sources: &SourceMap) -> Value {
    let mut rules: Vec<&str> = diags.iter().map(|d| d.rule).collect();
    rules.sort_unstable();
    rules.dedup();
    let rule_objs: Vec<Value> = rules
        .iter()
        .map(|r| {
            json!({
                "id": r,
                "name": r,
                "shortDescription": {"text": rule_description(r)},
                "helpUri": "https://github.com/pipe-ci/pipe/blob/main/README.md#pipe-validate",
            })
        })
        .collect();
    let results: Vec<Value> = diags
        .iter()
        .map(|d| {
            let (file, line, col, end_line, end_col) = location(d, sources);
            let mut text = d.message.clone();
            if let Some(h) = &d.hint {
                text.push_str("\nhint: ");
                text.push_str(h);
            }
            json!({
                "ruleId": d.rule,
                "ruleIndex": rules.iter().position(|r| *r == d.rule).unwrap_or(0),
                "level": match d.severity { Severity::Error => "error", Severity::Lint => "warning" },
                "message": {"text": text},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": file},
                        "region": {
                            "startLine": line,
                            "startColumn": col,
                            "endLine": end_line,
                            "endColumn": end_col.max(if end_line == line { col } else { 1 }),
                        }
                    }
                }],
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "pipe",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/pipe-ci/pipe",
                "rules": rule_objs,
            }},
            "results": results,
        }],
    })
}
