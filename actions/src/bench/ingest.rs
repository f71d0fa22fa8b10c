//! Other tools' benchmark results, read into one shape: a named series of samples in seconds.
//!
//! | format | file | samples |
//! |---|---|---|
//! | `hyperfine` (and `pipe bench`'s own export) | `--export-json` | `results[].times` |
//! | `criterion` | `target/criterion/**/new/sample.json`, `raw.csv`, `estimates.json`, or the folder | per-iteration time of each sample; `estimates.json` alone gives the median only |
//! | `libtest` | `cargo bench` output (`bench: N ns/iter (+/- D)`) | one value per benchmark |
//! | `google-benchmark` | `--benchmark_format=json` | `real_time` of each repetition (`run_type: iteration`), else the median aggregate |
//! | `pytest-benchmark` | `--benchmark-json` | `stats.data` (with `--benchmark-save-data`), else the median |
//!
//! A result with fewer samples than the gate's minimum compares as INCONCLUSIVE, never PASS.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One benchmark's samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchSeries {
    /// Benchmark name.
    pub name: String,
    /// Samples in seconds (lower is better).
    pub samples: Vec<f64>,
    /// The tool it came from.
    pub source: String,
    /// The samples are summaries (one number per run), not independent timings.
    pub aggregate: bool,
}

/// A file that could not be read as a benchmark result.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct IngestError {
    /// The file.
    pub path: PathBuf,
    /// The line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

fn err(path: &Path, line: Option<usize>, message: impl Into<String>) -> IngestError {
    IngestError {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// hyperfine or pipe bench JSON.
    Hyperfine,
    /// Criterion's files.
    Criterion,
    /// `cargo bench` (libtest) text.
    Libtest,
    /// Google Benchmark JSON.
    GoogleBenchmark,
    /// pytest-benchmark JSON.
    PytestBenchmark,
}

impl Format {
    /// Parses a format name.
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "hyperfine" | "pipe" => Format::Hyperfine,
            "criterion" => Format::Criterion,
            "libtest" | "cargo-bench" => Format::Libtest,
            "google-benchmark" | "gbench" => Format::GoogleBenchmark,
            "pytest-benchmark" => Format::PytestBenchmark,
            _ => return None,
        })
    }
}

/// Units per second (dividing keeps decimal values exact: 10 µs is 1e-5 s).
fn time_unit(unit: &str) -> Option<f64> {
    Some(match unit {
        "ns" => 1e9,
        "us" | "µs" => 1e6,
        "ms" => 1e3,
        "s" => 1.0,
        _ => return None,
    })
}

fn json(path: &Path, text: &str) -> Result<Value, IngestError> {
    serde_json::from_str(text).map_err(|e| {
        err(
            path,
            Some(e.line()),
            format!("invalid JSON at column {}: {e}", e.column()),
        )
    })
}

/// Reads one file or folder, guessing the format when `format` is `None`.
pub fn read_path(path: &Path, format: Option<Format>) -> Result<Vec<BenchSeries>, IngestError> {
    if path.is_dir() {
        return criterion_dir(path);
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(path, None, e.to_string()))?;
    let fname = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let format = match format {
        Some(f) => f,
        None => detect(path, fname, &text)?,
    };
    match format {
        Format::Hyperfine => hyperfine(path, &json(path, &text)?),
        Format::GoogleBenchmark => google(path, &json(path, &text)?),
        Format::PytestBenchmark => pytest(path, &json(path, &text)?),
        Format::Libtest => libtest(path, &text),
        Format::Criterion => criterion_file(path, fname, &text),
    }
}

fn detect(path: &Path, fname: &str, text: &str) -> Result<Format, IngestError> {
    if fname == "raw.csv" || fname == "sample.json" || fname == "estimates.json" {
        return Ok(Format::Criterion);
    }
    let t = text.trim_start();
    if t.starts_with('{') {
        let v = json(path, text)?;
        if v.get("results").is_some() {
            return Ok(Format::Hyperfine);
        }
        if v.get("benchmarks").is_some() && v.get("machine_info").is_some() {
            return Ok(Format::PytestBenchmark);
        }
        if v.get("benchmarks").is_some() {
            return Ok(Format::GoogleBenchmark);
        }
        return Err(err(
            path,
            Some(1),
            "unknown benchmark JSON (expected hyperfine `results`, Google Benchmark or pytest-benchmark `benchmarks`)",
        ));
    }
    if text.lines().any(|l| l.contains(" bench: ")) {
        return Ok(Format::Libtest);
    }
    Err(err(path, None, "unknown benchmark result format"))
}

fn hyperfine(path: &Path, v: &Value) -> Result<Vec<BenchSeries>, IngestError> {
    let results = v
        .get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| err(path, None, "`results` is not an array"))?;
    results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let name = r
                .get("name")
                .or_else(|| r.get("command"))
                .and_then(Value::as_str)
                .ok_or_else(|| err(path, None, format!("`results[{i}].command` is missing")))?;
            let samples = r
                .get("times")
                .and_then(Value::as_array)
                .map(|t| t.iter().filter_map(Value::as_f64).collect::<Vec<_>>())
                .or_else(|| r.get("mean").and_then(Value::as_f64).map(|m| vec![m]))
                .ok_or_else(|| {
                    err(
                        path,
                        None,
                        format!("`results[{i}]` has neither `times` nor `mean`"),
                    )
                })?;
            Ok(BenchSeries {
                name: name.to_string(),
                aggregate: r.get("times").is_none(),
                samples,
                source: "hyperfine".to_string(),
            })
        })
        .collect()
}

fn google(path: &Path, v: &Value) -> Result<Vec<BenchSeries>, IngestError> {
    let list = v
        .get("benchmarks")
        .and_then(Value::as_array)
        .ok_or_else(|| err(path, None, "`benchmarks` is not an array"))?;
    let mut out: Vec<BenchSeries> = Vec::new();
    let mut medians: Vec<BenchSeries> = Vec::new();
    for (i, b) in list.iter().enumerate() {
        let field = |k: &str| b.get(k);
        let run_name = field("run_name")
            .or_else(|| field("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| err(path, None, format!("`benchmarks[{i}].name` is missing")))?;
        let unit = field("time_unit").and_then(Value::as_str).unwrap_or("ns");
        let scale = time_unit(unit).ok_or_else(|| {
            err(
                path,
                None,
                format!("`benchmarks[{i}].time_unit` `{unit}` is unknown"),
            )
        })?;
        let real = field("real_time").and_then(Value::as_f64).ok_or_else(|| {
            err(
                path,
                None,
                format!("`benchmarks[{i}].real_time` is not a number"),
            )
        })?;
        let run_type = field("run_type")
            .and_then(Value::as_str)
            .unwrap_or("iteration");
        let target = if run_type == "aggregate" {
            if field("aggregate_name").and_then(Value::as_str) != Some("median") {
                continue;
            }
            &mut medians
        } else {
            &mut out
        };
        match target.iter_mut().find(|s| s.name == run_name) {
            Some(s) => s.samples.push(real / scale),
            None => target.push(BenchSeries {
                name: run_name.to_string(),
                samples: vec![real / scale],
                source: "google-benchmark".to_string(),
                aggregate: run_type == "aggregate",
            }),
        }
    }
    for m in medians {
        if !out.iter().any(|s| s.name == m.name) {
            out.push(m);
        }
    }
    Ok(out)
}

fn pytest(path: &Path, v: &Value) -> Result<Vec<BenchSeries>, IngestError> {
    let list = v
        .get("benchmarks")
        .and_then(Value::as_array)
        .ok_or_else(|| err(path, None, "`benchmarks` is not an array"))?;
    list.iter()
        .enumerate()
        .map(|(i, b)| {
            let name = b
                .get("fullname")
                .or_else(|| b.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| err(path, None, format!("`benchmarks[{i}].name` is missing")))?;
            let stats = b
                .get("stats")
                .ok_or_else(|| err(path, None, format!("`benchmarks[{i}].stats` is missing")))?;
            let data = stats
                .get("data")
                .and_then(Value::as_array)
                .map(|d| d.iter().filter_map(Value::as_f64).collect::<Vec<_>>());
            let (samples, aggregate) = match data {
                Some(d) if !d.is_empty() => (d, false),
                _ => (
                    vec![stats.get("median").and_then(Value::as_f64).ok_or_else(|| {
                        err(
                            path,
                            None,
                            format!("`benchmarks[{i}].stats.median` is missing"),
                        )
                    })?],
                    true,
                ),
            };
            Ok(BenchSeries {
                name: name.to_string(),
                samples,
                source: "pytest-benchmark".to_string(),
                aggregate,
            })
        })
        .collect()
}

/// `test name ... bench:   1,234 ns/iter (+/- 56)` (libtest's bencher output).
fn libtest(path: &Path, text: &str) -> Result<Vec<BenchSeries>, IngestError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some((head, tail)) = line.split_once(" bench:") else {
            continue;
        };
        let name = head
            .trim()
            .strip_prefix("test ")
            .map(|n| n.trim_end_matches("...").trim())
            .ok_or_else(|| {
                err(
                    path,
                    Some(i + 1),
                    "expected `test NAME ... bench: N ns/iter`",
                )
            })?;
        let tail = tail.trim();
        let (num, rest) = tail
            .split_once(' ')
            .ok_or_else(|| err(path, Some(i + 1), "expected `N ns/iter` after `bench:`"))?;
        let value: f64 = num.replace(',', "").parse().map_err(|_| {
            err(
                path,
                Some(i + 1),
                format!("`{num}` is not a number of nanoseconds"),
            )
        })?;
        if !rest.starts_with("ns/iter") {
            return Err(err(path, Some(i + 1), "expected the unit `ns/iter`"));
        }
        out.push(BenchSeries {
            name: name.to_string(),
            samples: vec![value / 1e9],
            source: "libtest".to_string(),
            aggregate: true,
        });
    }
    if out.is_empty() {
        return Err(err(path, None, "no `bench:` lines"));
    }
    Ok(out)
}

fn criterion_name(new_dir: &Path) -> String {
    // `<group>/<bench>/new/x`: prefer benchmark.json's full id.
    if let Some(v) = std::fs::read_to_string(new_dir.join("benchmark.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        && let Some(id) = v.get("full_id").and_then(Value::as_str)
    {
        return id.to_string();
    }
    let parts: Vec<String> = new_dir
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let upto = parts
        .iter()
        .rposition(|p| p == "new" || p == "base")
        .unwrap_or(parts.len());
    let start = parts
        .iter()
        .rposition(|p| p == "criterion")
        .map_or(0, |i| i + 1);
    parts
        .get(start..upto)
        .map(|p| p.join("/"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| new_dir.display().to_string())
}

fn criterion_file(path: &Path, fname: &str, text: &str) -> Result<Vec<BenchSeries>, IngestError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = criterion_name(dir);
    match fname {
        "raw.csv" => {
            let mut lines = text.lines().enumerate();
            let header = lines
                .next()
                .map(|(_, h)| h.split(',').collect::<Vec<_>>())
                .ok_or_else(|| err(path, Some(1), "empty file"))?;
            let col = |k: &str| header.iter().position(|h| *h == k);
            let (Some(v), Some(n), Some(u)) = (
                col("sample_measured_value"),
                col("iteration_count"),
                col("unit"),
            ) else {
                return Err(err(
                    path,
                    Some(1),
                    "expected the columns `sample_measured_value`, `unit` and `iteration_count`",
                ));
            };
            let mut samples = Vec::new();
            for (i, l) in lines {
                if l.trim().is_empty() {
                    continue;
                }
                let f: Vec<&str> = l.split(',').collect();
                let bad = || {
                    err(
                        path,
                        Some(i + 1),
                        "expected a measured value, unit and iteration count",
                    )
                };
                let value: f64 = f.get(v).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let iters: f64 = f.get(n).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let unit = f.get(u).copied().unwrap_or("ns");
                let scale = time_unit(unit)
                    .ok_or_else(|| err(path, Some(i + 1), format!("unknown unit `{unit}`")))?;
                samples.push(value / iters.max(1.0) / scale);
            }
            Ok(vec![BenchSeries {
                name,
                samples,
                source: "criterion".to_string(),
                aggregate: false,
            }])
        }
        "estimates.json" => {
            let v = json(path, text)?;
            let m = v
                .pointer("/median/point_estimate")
                .and_then(Value::as_f64)
                .ok_or_else(|| err(path, None, "`median.point_estimate` is missing"))?;
            Ok(vec![BenchSeries {
                name,
                samples: vec![m / 1e9],
                source: "criterion".to_string(),
                aggregate: true,
            }])
        }
        _ => {
            let v = json(path, text)?;
            let iters = v.get("iters").and_then(Value::as_array);
            let times = v.get("times").and_then(Value::as_array);
            let (Some(iters), Some(times)) = (iters, times) else {
                return Err(err(path, None, "expected `iters` and `times` arrays"));
            };
            let samples = iters
                .iter()
                .zip(times)
                .filter_map(|(n, t)| Some(t.as_f64()? / n.as_f64()?.max(1.0) / 1e9))
                .collect();
            Ok(vec![BenchSeries {
                name,
                samples,
                source: "criterion".to_string(),
                aggregate: false,
            }])
        }
    }
}

/// Every benchmark under a criterion folder (`target/criterion`): `new/sample.json` first,
/// else `new/raw.csv`, else `new/estimates.json`.
fn criterion_dir(root: &Path) -> Result<Vec<BenchSeries>, IngestError> {
    let mut news: Vec<PathBuf> = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    news.push(p);
                } else if p.file_name().is_none_or(|n| n != "report" && n != "base") {
                    stack.push(p);
                }
            }
        }
    }
    news.sort();
    let mut out = Vec::new();
    for n in news {
        for f in ["sample.json", "raw.csv", "estimates.json"] {
            let p = n.join(f);
            if p.is_file() {
                out.extend(read_path(&p, Some(Format::Criterion))?);
                break;
            }
        }
    }
    if out.is_empty() {
        return Err(err(
            root,
            None,
            "no criterion results (`*/new/sample.json`) below this folder",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn libtest_lines_and_errors() {
        let d = tempfile::tempdir().expect("tmp");
        let p = write(
            d.path(),
            "out.txt",
            "running 2 tests\ntest a::fast ... bench:          12 ns/iter (+/- 1)\ntest slow    ... bench:   1,234,567 ns/iter (+/- 5,000)\n\ntest result: ok\n",
        );
        let r = read_path(&p, None).expect("parse");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name, "a::fast");
        assert!((r[1].samples[0] - 1.234567e-3).abs() < 1e-12);
        let bad = write(d.path(), "bad.txt", "x\ntest a ... bench:  lots ns/iter\n");
        let e = read_path(&bad, None).expect_err("bad").to_string();
        assert!(
            e.ends_with("bad.txt:2: `lots` is not a number of nanoseconds"),
            "{e}"
        );
    }

    #[test]
    fn malformed_json_names_file_and_line() {
        let d = tempfile::tempdir().expect("tmp");
        let p = write(
            d.path(),
            "h.json",
            "{\n \"results\": [\n  {\"command\": 1,}\n ]\n}\n",
        );
        let e = read_path(&p, Some(Format::Hyperfine))
            .expect_err("bad")
            .to_string();
        assert!(e.contains("h.json:3: invalid JSON"), "{e}");
    }

    #[test]
    fn google_benchmark_repetitions_and_aggregates() {
        let d = tempfile::tempdir().expect("tmp");
        let p = write(
            d.path(),
            "g.json",
            r#"{"context": {"num_cpus": 2}, "benchmarks": [
              {"name": "BM_a", "run_name": "BM_a", "run_type": "iteration", "real_time": 10, "time_unit": "us"},
              {"name": "BM_a", "run_name": "BM_a", "run_type": "iteration", "real_time": 12, "time_unit": "us"},
              {"name": "BM_a_median", "run_name": "BM_a", "run_type": "aggregate", "aggregate_name": "median", "real_time": 11, "time_unit": "us"},
              {"name": "BM_b_mean", "run_name": "BM_b", "run_type": "aggregate", "aggregate_name": "mean", "real_time": 5, "time_unit": "ms"},
              {"name": "BM_b_median", "run_name": "BM_b", "run_type": "aggregate", "aggregate_name": "median", "real_time": 4, "time_unit": "ms"}
            ]}"#,
        );
        let r = read_path(&p, None).expect("parse");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].samples, vec![10e-6, 12e-6]);
        assert!(!r[0].aggregate);
        assert_eq!(r[1].name, "BM_b");
        assert_eq!(r[1].samples, vec![4e-3]);
        assert!(r[1].aggregate);
    }

    #[test]
    fn criterion_folder() {
        let d = tempfile::tempdir().expect("tmp");
        write(
            d.path(),
            "criterion/parse/small/new/sample.json",
            r#"{"sampling_mode":"Linear","iters":[1.0,2.0],"times":[100.0,220.0]}"#,
        );
        write(
            d.path(),
            "criterion/parse/small/new/benchmark.json",
            r#"{"group_id":"parse","function_id":"small","full_id":"parse/small"}"#,
        );
        write(
            d.path(),
            "criterion/other/new/raw.csv",
            "group,function,value,throughput_num,throughput_type,sample_measured_value,unit,iteration_count\nother,,,,,1000,ns,10\nother,,,,,3000,ns,20\n",
        );
        let r = read_path(&d.path().join("criterion"), None).expect("parse");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name, "other");
        let close = |a: &[f64], b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-15)
        };
        assert!(close(&r[0].samples, &[100e-9, 150e-9]), "{:?}", r[0]);
        assert_eq!(r[1].name, "parse/small");
        assert!(close(&r[1].samples, &[100e-9, 110e-9]), "{:?}", r[1]);
    }
}
