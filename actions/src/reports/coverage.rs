//! Coverage files: LCOV tracefiles (coverage.py, grcov, `cargo llvm-cov --lcov`), Cobertura
//! XML (coverage.py, gcovr, Surefire's JaCoCo converters) and `cargo llvm-cov --json`
//! (llvm-cov's export format). Each gives line and branch totals.

use std::collections::BTreeMap;
use std::path::Path;

use quick_xml::events::Event;
use quick_xml::reader::Reader;
use serde_json::Value;

use super::{CoverageTotals, ReportError, line_of};

/// Parses an LCOV tracefile. `DA`/`BRDA` records are counted when present (a line listed
/// twice for one file counts once, covered if any record hit it); `LF`/`LH`/`BRF`/`BRH`
/// otherwise.
pub fn lcov(path: &Path, text: &str) -> Result<CoverageTotals, ReportError> {
    let mut t = CoverageTotals::default();
    let mut file: Option<String> = None;
    let mut lines: BTreeMap<u64, bool> = BTreeMap::new();
    let mut branches: BTreeMap<(u64, String, String), bool> = BTreeMap::new();
    let mut summary = (0u64, 0u64, 0u64, 0u64);
    let mut records = 0;
    for (i, raw) in text.lines().enumerate() {
        let ln = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |m: &str| ReportError::at(path, Some(ln), m.to_string());
        let num = |s: &str, what: &str| -> Result<u64, ReportError> {
            s.trim()
                .parse::<u64>()
                .map_err(|_| bad(&format!("`{s}` is not a {what}")))
        };
        if line == "end_of_record" {
            if file.take().is_none() {
                return Err(bad("`end_of_record` without `SF:`"));
            }
            let (lf, lh, bf, bh) = summary;
            if lines.is_empty() {
                t.lines_total += lf;
                t.lines_covered += lh;
            } else {
                t.lines_total += lines.len() as u64;
                t.lines_covered += lines.values().filter(|c| **c).count() as u64;
            }
            if branches.is_empty() {
                t.branches_total += bf;
                t.branches_covered += bh;
            } else {
                t.branches_total += branches.len() as u64;
                t.branches_covered += branches.values().filter(|c| **c).count() as u64;
            }
            t.files += 1;
            records += 1;
            lines.clear();
            branches.clear();
            summary = (0, 0, 0, 0);
            continue;
        }
        let Some((key, val)) = line.split_once(':') else {
            return Err(bad(&format!("expected `KEY:VALUE`, found `{line}`")));
        };
        match key {
            "TN" => {}
            "SF" => {
                if file.is_some() {
                    return Err(bad("`SF:` before the previous record's `end_of_record`"));
                }
                file = Some(val.to_string());
            }
            "DA" => {
                let mut f = val.split(',');
                let l = num(f.next().unwrap_or(""), "line number")?;
                let hits = f.next().ok_or_else(|| bad("expected `DA:LINE,HITS`"))?;
                let hits: i64 = hits
                    .trim()
                    .parse::<f64>()
                    .map(|h| h as i64)
                    .map_err(|_| bad(&format!("`{hits}` is not a hit count")))?;
                let e = lines.entry(l).or_insert(false);
                *e |= hits > 0;
            }
            "BRDA" => {
                let f: Vec<&str> = val.split(',').collect();
                if f.len() != 4 {
                    return Err(bad("expected `BRDA:LINE,BLOCK,BRANCH,TAKEN`"));
                }
                let l = num(f[0], "line number")?;
                let taken = f[3].trim();
                let hit = taken != "-" && num(taken, "branch count")? > 0;
                let e = branches
                    .entry((l, f[1].to_string(), f[2].to_string()))
                    .or_insert(false);
                *e |= hit;
            }
            "LF" => summary.0 = num(val, "line count")?,
            "LH" => summary.1 = num(val, "line count")?,
            "BRF" => summary.2 = num(val, "branch count")?,
            "BRH" => summary.3 = num(val, "branch count")?,
            "FN" | "FNDA" | "FNF" | "FNH" | "FNL" | "FNA" | "VER" => {}
            _ => return Err(bad(&format!("unknown LCOV record `{key}`"))),
        }
    }
    if file.is_some() {
        return Err(ReportError::at(
            path,
            Some(text.lines().count()),
            "the last record has no `end_of_record`".to_string(),
        ));
    }
    if records == 0 {
        return Err(ReportError::at(
            path,
            None,
            "no LCOV records (`SF:` … `end_of_record`)".to_string(),
        ));
    }
    Ok(t)
}

/// Parses Cobertura XML: the root's `lines-valid`/`lines-covered`/`branches-valid`/
/// `branches-covered` when present, else the `<line>` elements (`hits`, `branch`,
/// `condition-coverage="50% (1/2)"`).
pub fn cobertura(path: &Path, text: &str) -> Result<CoverageTotals, ReportError> {
    let mut r = Reader::from_str(text);
    let mut t = CoverageTotals::default();
    let mut root: Option<CoverageTotals> = None;
    let mut saw_root = false;
    let mut files = std::collections::BTreeSet::new();
    let mut counted = CoverageTotals::default();
    let bad = |pos: u64, msg: String| ReportError::at(path, line_of(text, pos as usize), msg);
    loop {
        let pos = r.buffer_position();
        let ev = r
            .read_event()
            .map_err(|e| bad(r.error_position(), format!("invalid XML: {e}")))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let get = |k: &[u8]| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == k)
                        .and_then(|a| {
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .ok()
                                .map(|v| v.into_owned())
                        })
                };
                match e.local_name().as_ref() {
                    b"coverage" => {
                        saw_root = true;
                        let n = |k: &[u8]| -> Result<Option<u64>, ReportError> {
                            match get(k) {
                                Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
                                    bad(
                                        pos,
                                        format!(
                                            "`{}` `{v}` is not a count",
                                            String::from_utf8_lossy(k)
                                        ),
                                    )
                                }),
                                None => Ok(None),
                            }
                        };
                        if let (Some(lv), Some(lc)) = (n(b"lines-valid")?, n(b"lines-covered")?) {
                            root = Some(CoverageTotals {
                                lines_total: lv,
                                lines_covered: lc,
                                branches_total: n(b"branches-valid")?.unwrap_or(0),
                                branches_covered: n(b"branches-covered")?.unwrap_or(0),
                                files: 0,
                            });
                        }
                    }
                    b"class" => {
                        if let Some(f) = get(b"filename") {
                            files.insert(f);
                        }
                    }
                    b"line" if saw_root => {
                        let hits =
                            get(b"hits").ok_or_else(|| bad(pos, "`line` has no `hits`".into()))?;
                        let hits: f64 = hits
                            .parse()
                            .map_err(|_| bad(pos, format!("`hits` `{hits}` is not a number")))?;
                        counted.lines_total += 1;
                        if hits > 0.0 {
                            counted.lines_covered += 1;
                        }
                        if get(b"branch").as_deref() == Some("true")
                            && let Some(cc) = get(b"condition-coverage")
                            && let Some((a, b)) = cc
                                .split_once('(')
                                .and_then(|(_, r)| r.trim_end_matches(')').split_once('/'))
                        {
                            counted.branches_covered += a.trim().parse::<u64>().unwrap_or(0);
                            counted.branches_total += b.trim().parse::<u64>().unwrap_or(0);
                        }
                    }
                    other => {
                        if !saw_root {
                            return Err(bad(
                                pos,
                                format!(
                                    "expected `coverage`, found `{}`",
                                    String::from_utf8_lossy(other)
                                ),
                            ));
                        }
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root {
        return Err(ReportError::at(
            path,
            None,
            "not Cobertura XML: no `coverage` element".into(),
        ));
    }
    t = match root {
        Some(r) => CoverageTotals {
            files: t.files,
            ..r
        },
        None => counted,
    };
    t.files = files.len() as u64;
    Ok(t)
}

/// Parses `cargo llvm-cov --json` (`llvm.coverage.json.export`): `data[].totals`.
pub fn llvm_cov(path: &Path, text: &str) -> Result<CoverageTotals, ReportError> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        ReportError::at(
            path,
            Some(e.line()),
            format!("invalid JSON at column {}: {e}", e.column()),
        )
    })?;
    let data = v.get("data").and_then(Value::as_array).ok_or_else(|| {
        ReportError::at(
            path,
            None,
            "`data` is not an array (not an llvm-cov JSON export)".into(),
        )
    })?;
    let mut t = CoverageTotals::default();
    for (i, d) in data.iter().enumerate() {
        let n = |p: &str| -> Result<u64, ReportError> {
            d.pointer(p).and_then(Value::as_u64).ok_or_else(|| {
                ReportError::at(
                    path,
                    None,
                    format!(
                        "`data[{i}].totals{}` is not a count",
                        p.trim_start_matches("/totals").replace('/', ".")
                    ),
                )
            })
        };
        t.lines_total += n("/totals/lines/count")?;
        t.lines_covered += n("/totals/lines/covered")?;
        if d.pointer("/totals/branches").is_some() {
            t.branches_total += n("/totals/branches/count")?;
            t.branches_covered += n("/totals/branches/covered")?;
        }
        t.files += d
            .get("files")
            .and_then(Value::as_array)
            .map_or(0, |f| f.len() as u64);
    }
    Ok(t)
}
