//! Text for people: the terminal report, markdown (hyperfine's table plus the verdicts) and the
//! terminal sparkline. Pure functions; the CLI decides where the text goes.

use std::fmt::Write as _;

use super::compare::{Comparison, Verdict};
use super::run::{BenchReport, CommandResult};

/// A time unit picked for a value in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Seconds.
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds.
    Ns,
}

impl Unit {
    /// The unit that suits `seconds`.
    pub fn for_value(seconds: f64) -> Unit {
        let a = seconds.abs();
        if a >= 1.0 {
            Unit::S
        } else if a >= 1e-3 {
            Unit::Ms
        } else if a >= 1e-6 {
            Unit::Us
        } else {
            Unit::Ns
        }
    }

    /// Its symbol.
    pub fn name(self) -> &'static str {
        match self {
            Unit::S => "s",
            Unit::Ms => "ms",
            Unit::Us => "µs",
            Unit::Ns => "ns",
        }
    }

    /// `seconds` in this unit.
    pub fn scale(self, seconds: f64) -> f64 {
        match self {
            Unit::S => seconds,
            Unit::Ms => seconds * 1e3,
            Unit::Us => seconds * 1e6,
            Unit::Ns => seconds * 1e9,
        }
    }
}

/// `12.3 ms`.
pub fn format_time(seconds: f64) -> String {
    let u = Unit::for_value(seconds);
    format!("{:.1} {}", u.scale(seconds), u.name())
}

fn pct(r: f64) -> String {
    format!("{:+.1}%", (r - 1.0) * 100.0)
}

/// Colours for the terminal report (`None` fields print plain).
pub trait Paint {
    /// Paints a verdict word.
    fn verdict(&self, v: Verdict, text: &str) -> String;
    /// Paints a heading.
    fn bold(&self, text: &str) -> String;
}

/// No colour.
pub struct Plain;

impl Paint for Plain {
    fn verdict(&self, _: Verdict, text: &str) -> String {
        text.to_string()
    }
    fn bold(&self, text: &str) -> String {
        text.to_string()
    }
}

/// hyperfine's terminal layout plus median, its interval, MAD and outliers.
pub fn text(report: &BenchReport, paint: &dyn Paint) -> String {
    let mut s = String::new();
    for (i, r) in report.results.iter().enumerate() {
        let _ = writeln!(
            s,
            "{}",
            paint.bold(&format!("Benchmark {}: {}", i + 1, r.name))
        );
        command_text(&mut s, r);
        s.push('\n');
    }
    if !report.pipe.comparisons.is_empty() {
        let _ = writeln!(
            s,
            "{}",
            paint.bold(match report.pipe.metric {
                super::run::Metric::Wall => "Summary",
                super::run::Metric::Cpu => "Summary (CPU time)",
            })
        );
        let base = &report.results[0];
        for c in &report.pipe.comparisons {
            let _ = writeln!(
                s,
                "  {}  `{}` vs `{}`: {} (median ratio {:.3}{})",
                paint.verdict(c.verdict, c.verdict.as_str()),
                c.name,
                base.name,
                c.reason,
                c.median_ratio,
                c.bootstrap_ci
                    .map(|b| format!(", {:.3} … {:.3}", b.low, b.high))
                    .unwrap_or_default()
            );
        }
    }
    s
}

fn command_text(s: &mut String, r: &CommandResult) {
    let u = Unit::for_value(r.mean);
    let f = |v: f64| format!("{:.1} {}", u.scale(v), u.name());
    let _ = writeln!(
        s,
        "  Time (mean ± σ):   {} ± {}    [User: {}, System: {}]",
        f(r.mean),
        r.stddev.map_or_else(|| "n/a".to_string(), f),
        format_time(r.user),
        format_time(r.system)
    );
    let _ = writeln!(
        s,
        "  Range (min … max): {} … {}    {} runs",
        f(r.min),
        f(r.max),
        r.times.len()
    );
    let _ = writeln!(
        s,
        "  Median (95% CI):   {}{}    MAD {}",
        f(r.median),
        r.median_ci95
            .map(|c| format!(" ({} … {})", f(c.low), f(c.high)))
            .unwrap_or_default(),
        f(r.mad)
    );
    let o = r.outliers;
    if o.total() > 0 {
        let _ = writeln!(
            s,
            "  Outliers: {} of {} ({} mild, {} severe; kept)",
            o.total(),
            r.times.len(),
            o.low_mild + o.high_mild,
            o.low_severe + o.high_severe
        );
    }
    let failed = r.exit_codes.iter().filter(|c| **c != 0).count();
    if failed > 0 {
        let _ = writeln!(s, "  Warning: {failed} runs exited non-zero");
    }
}

/// hyperfine's markdown table (unit of the first command), then pipe's verdicts.
pub fn markdown(report: &BenchReport) -> String {
    let mut s = String::new();
    let Some(first) = report.results.first() else {
        return s;
    };
    let u = Unit::for_value(first.mean);
    let n = u.name();
    let _ = writeln!(
        s,
        "| Command | Mean [{n}] | Min [{n}] | Max [{n}] | Relative |\n|:---|---:|---:|---:|---:|"
    );
    let fastest = report
        .results
        .iter()
        .map(|r| r.mean)
        .fold(f64::INFINITY, f64::min);
    for r in &report.results {
        let rel = r.mean / fastest;
        let _ = writeln!(
            s,
            "| `{}` | {:.1} ± {:.1} | {:.1} | {:.1} | {:.2} |",
            r.name.replace('|', "\\|"),
            u.scale(r.mean),
            u.scale(r.stddev.unwrap_or(0.0)),
            u.scale(r.min),
            u.scale(r.max),
            rel
        );
    }
    if !report.pipe.comparisons.is_empty() {
        s.push('\n');
        s.push_str(&comparisons_markdown(&report.pipe.comparisons, &first.name));
    }
    s
}

/// The verdict table.
pub fn comparisons_markdown(cs: &[Comparison], baseline: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| Benchmark | Baseline | Change (median) | Interval | Verdict |\n|:---|:---|---:|:---|:---|"
    );
    for c in cs {
        let _ = writeln!(
            s,
            "| `{}` | `{}` | {} | {} | **{}** {} |",
            c.name.replace('|', "\\|"),
            baseline.replace('|', "\\|"),
            pct(c.median_ratio),
            c.bootstrap_ci
                .map(|b| format!("{} … {}", pct(b.low), pct(b.high)))
                .unwrap_or_else(|| "n/a".to_string()),
            c.verdict.as_str(),
            c.reason.replace('|', "\\|")
        );
    }
    s
}

/// A terminal sparkline of values (one block character each, scaled min..max).
pub fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    values
        .iter()
        .map(|v| {
            if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
                BARS[3]
            } else {
                BARS[(((v - lo) / (hi - lo)) * 7.0).round().clamp(0.0, 7.0) as usize]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales() {
        assert_eq!(sparkline(&[1.0, 2.0, 3.0, 8.0]), "▁▂▃█");
        assert_eq!(sparkline(&[5.0, 5.0]), "▄▄");
        assert_eq!(sparkline(&[]), "");
    }

    #[test]
    fn units() {
        assert_eq!(format_time(0.0123), "12.3 ms");
        assert_eq!(format_time(2.0), "2.0 s");
        assert_eq!(format_time(4.2e-7), "420.0 ns");
        assert_eq!(format_time(0.000_05), "50.0 µs");
    }
}
