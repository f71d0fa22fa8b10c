//! JUnit XML as cargo-nextest, pytest, jest-junit, Maven Surefire and go-junit-report write
//! it. Counts come from the `<testcase>` elements, not from the suites' `tests=`/`failures=`
//! attributes (the dialects disagree on them): a case with `<failure>` or `<error>` failed,
//! one with `<skipped>` was skipped, the rest passed. nextest's and Surefire's
//! `<flakyFailure>`/`<rerunFailure>` on a passing case mark it flaky, not failed.

use std::path::Path;

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::{FailedTest, ReportError, TestTotals, line_of};

/// A parsed JUnit file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JunitReport {
    /// Totals.
    pub totals: TestTotals,
    /// The failed cases.
    pub failed: Vec<FailedTest>,
}

fn attr(e: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == name)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

#[derive(Default)]
struct Case {
    name: String,
    classname: String,
    suite: String,
    file: Option<String>,
    line: Option<u64>,
    time: f64,
    failed: bool,
    skipped: bool,
    flaky: bool,
    message: Option<String>,
    text: String,
    in_failure: bool,
}

/// Parses JUnit XML text; `path` names the file in errors.
pub fn parse(path: &Path, text: &str) -> Result<JunitReport, ReportError> {
    let mut r = Reader::from_str(text);
    r.config_mut().trim_text(false);
    let mut out = JunitReport::default();
    let mut suites: Vec<String> = Vec::new();
    let mut case: Option<Case> = None;
    let mut saw_root = false;
    let bad = |pos: u64, msg: String| ReportError::at(path, line_of(text, pos as usize), msg);
    loop {
        let pos = r.buffer_position();
        let ev = r
            .read_event()
            .map_err(|e| bad(r.error_position(), format!("invalid XML: {e}")))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let tag = e.local_name().as_ref().to_vec();
                match tag.as_slice() {
                    b"testsuites" => saw_root = true,
                    b"testsuite" => {
                        saw_root = true;
                        if !empty {
                            suites.push(attr(e, b"name").unwrap_or_default());
                        }
                    }
                    b"testcase" => {
                        if !saw_root {
                            saw_root = true;
                        }
                        let name = attr(e, b"name").ok_or_else(|| {
                            bad(pos, "`testcase` has no `name` attribute".to_string())
                        })?;
                        let time = match attr(e, b"time") {
                            Some(t) => t.replace(',', "").parse::<f64>().map_err(|_| {
                                bad(pos, format!("`time` `{t}` is not a number of seconds"))
                            })?,
                            None => 0.0,
                        };
                        let c = Case {
                            name,
                            classname: attr(e, b"classname").unwrap_or_default(),
                            suite: suites.last().cloned().unwrap_or_default(),
                            file: attr(e, b"file"),
                            line: attr(e, b"line").and_then(|l| l.parse().ok()),
                            time,
                            ..Case::default()
                        };
                        if empty {
                            finish(&mut out, c);
                        } else {
                            case = Some(c);
                        }
                    }
                    b"failure" | b"error" => {
                        if let Some(c) = case.as_mut() {
                            c.failed = true;
                            c.message = c.message.take().or_else(|| attr(e, b"message"));
                            c.in_failure = !empty;
                        }
                    }
                    b"skipped" => {
                        if let Some(c) = case.as_mut() {
                            c.skipped = true;
                        }
                    }
                    b"flakyFailure" | b"flakyError" | b"rerunFailure" | b"rerunError" => {
                        if let Some(c) = case.as_mut() {
                            c.flaky = true;
                        }
                    }
                    _ => {
                        if !saw_root {
                            return Err(bad(
                                pos,
                                format!(
                                    "expected `testsuites` or `testsuite`, found `{}`",
                                    String::from_utf8_lossy(&tag)
                                ),
                            ));
                        }
                    }
                }
            }
            Event::Text(t) => {
                if let Some(c) = case.as_mut()
                    && c.in_failure
                    && c.text.len() < 4096
                {
                    c.text.push_str(&String::from_utf8_lossy(t.as_ref()));
                }
            }
            Event::CData(t) => {
                if let Some(c) = case.as_mut()
                    && c.in_failure
                    && c.text.len() < 4096
                {
                    c.text.push_str(&String::from_utf8_lossy(t.as_ref()));
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"testcase" => {
                    if let Some(c) = case.take() {
                        finish(&mut out, c);
                    }
                }
                b"testsuite" => {
                    suites.pop();
                }
                b"failure" | b"error" => {
                    if let Some(c) = case.as_mut() {
                        c.in_failure = false;
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root {
        return Err(ReportError::at(
            path,
            None,
            "not JUnit XML: no `testsuites`, `testsuite` or `testcase` element".to_string(),
        ));
    }
    Ok(out)
}

fn finish(out: &mut JunitReport, c: Case) {
    out.totals.tests += 1;
    out.totals.duration_s += c.time;
    if c.failed {
        out.totals.failed += 1;
        let message = c
            .message
            .filter(|m| !m.trim().is_empty())
            .unwrap_or(c.text)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
            .to_string();
        out.failed.push(FailedTest {
            suite: c.suite,
            classname: c.classname,
            name: c.name,
            message,
            file: c.file,
            line: c.line,
        });
    } else if c.skipped {
        out.totals.skipped += 1;
    } else {
        out.totals.passed += 1;
        if c.flaky {
            out.totals.flaky += 1;
        }
    }
}
