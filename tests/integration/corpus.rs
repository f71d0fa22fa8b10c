//! The validation corpus (`tests/validate/`): valid workflows stay clean, every `err/X.yml`
//! produces exactly the first lines in `err/X.out`, and pipe agrees with actionlint's recorded
//! verdicts except where `known-differences.txt` says why not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::{self, Finding};

/// Findings grouped by file name.
fn by_file(findings: &[Finding]) -> BTreeMap<String, Vec<Finding>> {
    let mut map: BTreeMap<String, Vec<Finding>> = BTreeMap::new();
    for f in findings {
        map.entry(f.file.clone()).or_default().push(f.clone());
    }
    map
}

fn run_dir(root: &Path, sub: &str) -> (Vec<String>, BTreeMap<String, Vec<Finding>>, Option<i32>) {
    let dir = root.join(sub);
    let files = common::yml_files(&dir);
    let (findings, code) = common::validate_json(&dir, &files);
    (files, by_file(&findings), code)
}

#[test]
fn ok_corpus_is_clean() {
    let sb = common::sandbox();
    let (files, found, code) = run_dir(sb.path(), "ok");
    assert!(files.len() >= 100, "only {} valid workflows", files.len());
    let lines: Vec<String> = found.values().flatten().map(Finding::first_line).collect();
    assert!(
        lines.is_empty(),
        "valid workflows have findings:\n{}",
        lines.join("\n")
    );
    assert_eq!(code, Some(0));
}

/// Compares every `X.yml` of `sub` with `X.out`. In an expected line, `*` as the column or
/// the message matches anything (used where the exact wording is not settled yet).
fn check_expected(sub: &str) {
    let sb = common::sandbox();
    let (files, found, code) = run_dir(sb.path(), sub);
    assert_eq!(code, Some(1), "every file of `{sub}/` has findings");
    let mut failures = Vec::new();
    for name in &files {
        let out = common::corpus_dir()
            .join(sub)
            .join(name.replace(".yml", ".out"));
        let expected =
            std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        let expected: Vec<&str> = expected.lines().filter(|l| !l.is_empty()).collect();
        let actual: Vec<String> = found
            .get(name)
            .map(|v| v.iter().map(Finding::first_line).collect())
            .unwrap_or_default();
        let same = expected.len() == actual.len()
            && expected
                .iter()
                .zip(&actual)
                .all(|(e, a)| line_matches(e, a));
        if !same {
            failures.push(format!(
                "{sub}/{name}\n  expected:\n    {}\n  actual:\n    {}",
                expected.join("\n    "),
                actual.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files differ from their .out:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// `FILE:LINE:COL: MESSAGE [RULE]` where COL or MESSAGE may be `*`.
fn line_matches(expected: &str, actual: &str) -> bool {
    if expected == actual {
        return true;
    }
    let split = |l: &str| -> Option<(String, String, String, String)> {
        let (loc, rest) = l.split_once(": ")?;
        let mut parts = loc.rsplitn(3, ':');
        let col = parts.next()?.to_owned();
        let line = parts.next()?.to_owned();
        let file = parts.next()?.to_owned();
        let (msg, rule) = rest.rsplit_once(" [")?;
        Some((
            format!("{file}:{line}"),
            col,
            msg.to_owned(),
            rule.to_owned(),
        ))
    };
    match (split(expected), split(actual)) {
        (Some(e), Some(a)) => {
            e.0 == a.0 && (e.1 == "*" || e.1 == a.1) && (e.2 == "*" || e.2 == a.2) && e.3 == a.3
        }
        _ => false,
    }
}

#[test]
fn err_corpus_matches_expected_lines() {
    let files = common::yml_files(&common::corpus_dir().join("err"));
    assert!(files.len() >= 100, "only {} error cases", files.len());
    check_expected("err");
}

#[test]
fn expr_corpus_matches_expected_lines() {
    check_expected("expr");
}

#[test]
fn human_first_lines_equal_json() {
    let sb = common::sandbox();
    let dir = sb.path().join("err");
    let files = common::yml_files(&dir);
    let (findings, _) = common::validate_json(&dir, &files);
    let mut args = vec!["validate", "--"];
    args.extend(files.iter().map(String::as_str));
    let human = common::pipe(&dir, &args);
    assert_eq!(human.code, Some(1));
    let firsts: Vec<&str> = human
        .stdout
        .lines()
        .filter(|l| files.iter().any(|f| l.starts_with(&format!("{f}:"))))
        .collect();
    let expected: Vec<String> = findings.iter().map(Finding::first_line).collect();
    assert_eq!(firsts, expected);
    // No continuation line may look like a first line (decisions.md).
    for l in human.stdout.lines() {
        if !firsts.contains(&l) {
            assert!(
                l.starts_with(' ') || l.is_empty(),
                "continuation line not indented: {l:?}"
            );
        }
    }
}

#[test]
fn line_patterns() {
    assert!(line_matches(
        "a.yml:1:*: * [x]",
        "a.yml:1:7: anything here [x]"
    ));
    assert!(!line_matches("a.yml:1:*: * [x]", "a.yml:2:7: anything [x]"));
    assert!(!line_matches("a.yml:1:*: * [x]", "a.yml:1:7: anything [y]"));
    assert!(!line_matches("a.yml:1:3: m [x]", "a.yml:1:4: m [x]"));
}

/// The recorded actionlint verdicts and the deliberate differences.
struct Reference {
    files: BTreeMap<String, (bool, BTreeSet<u64>)>,
    differences: BTreeMap<String, String>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(common::corpus_dir().join("actionlint-verdicts.json"))
        .expect("actionlint-verdicts.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let files = v["files"]
        .as_object()
        .expect("files")
        .iter()
        .map(|(k, f)| {
            let lines = f["lines"]
                .as_array()
                .expect("lines")
                .iter()
                .filter_map(serde_json::Value::as_u64)
                .collect();
            (
                k.clone(),
                (f["findings"].as_bool().expect("findings"), lines),
            )
        })
        .collect();
    let diffs = std::fs::read_to_string(common::corpus_dir().join("known-differences.txt"))
        .expect("known-differences.txt");
    let differences = diffs
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut parts = l.split_whitespace();
            let file = parts.next().expect("file").to_owned();
            let kind = parts.next().expect("kind").to_owned();
            (file, kind)
        })
        .collect();
    Reference { files, differences }
}

#[test]
fn agrees_with_actionlint() {
    let reference = reference();
    let sb = common::sandbox();
    let mut mismatches = Vec::new();
    let (mut total, mut same_verdict, mut both, mut same_lines) = (0, 0, 0, 0);
    for sub in ["ok", "err"] {
        let (files, found, _) = run_dir(sb.path(), sub);
        for name in files {
            let key = format!("{sub}/{name}");
            let Some((al_findings, al_lines)) = reference.files.get(&key) else {
                mismatches.push(format!("{key}: not in actionlint-verdicts.json (run bench/validate/compare.sh --update)"));
                continue;
            };
            let lines: BTreeSet<u64> = found
                .get(&name)
                .map(|v| v.iter().map(|f| f.line).collect())
                .unwrap_or_default();
            let verdict_ok = lines.is_empty() != *al_findings;
            let lines_ok = !verdict_ok || lines.is_empty() || lines == *al_lines;
            total += 1;
            same_verdict += usize::from(verdict_ok);
            if verdict_ok && !lines.is_empty() {
                both += 1;
                same_lines += usize::from(lines_ok);
            }
            let actual = if !verdict_ok {
                Some("verdict")
            } else if !lines_ok {
                Some("lines")
            } else {
                None
            };
            let allowed = reference.differences.get(&key).map(String::as_str);
            if actual != allowed {
                mismatches.push(format!(
                    "{key}: differs by {actual:?}, known-differences.txt says {allowed:?} (pipe lines {lines:?}, actionlint lines {al_lines:?})"
                ));
            }
        }
    }
    eprintln!(
        "agreement with actionlint: {same_verdict}/{total} same verdict; same error lines in {same_lines}/{both} files where both found problems"
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
