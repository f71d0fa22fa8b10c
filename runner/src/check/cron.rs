//! `on.schedule[].cron` and `timezone`: the POSIX cron syntax GitHub accepts, and the parsed
//! schedule the runner's scheduler can query.
//!
//! GitHub documents five fields (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or
//! `JAN`-`DEC`, day of week 0-6 or `SUN`-`SAT`) with `*`, `,`, `-` and `/`. A cron GitHub cannot
//! parse makes the workflow invalid, so it is an error (rule `events`, as actionlint reports
//! it), pointed at the exact field inside the string. A schedule that fires more often than
//! every 5 minutes is valid but GitHub never runs it that often: a lint. Like actionlint (whose
//! parser is robfig/cron) `?` is accepted as `*` in the two day fields and `N/step` means
//! "from N to the maximum".

use std::ops::Range;

use crate::diag::Diagnostic;
use crate::source::SourceFile;
use crate::workflow::YStr;

/// GitHub's shortest interval between two runs of a schedule, in minutes.
pub const SHORTEST_INTERVAL_MINUTES: u32 = 5;

/// One cron field's name, bounds and optional names (`JAN`, `SUN`).
#[derive(Clone, Copy, Debug)]
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: MONTHS,
    },
    Field {
        name: "day of week",
        min: 0,
        max: 6,
        names: DAYS,
    },
];

/// A parsed schedule: one bit set per field (bit `n` set when value `n` is selected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Minutes 0-59.
    pub minutes: u64,
    /// Hours 0-23.
    pub hours: u64,
    /// Days of the month 1-31.
    pub days_of_month: u64,
    /// Months 1-12.
    pub months: u64,
    /// Days of the week 0-6 (Sunday is 0).
    pub days_of_week: u64,
    /// Whether the day-of-month field was `*` or `?`.
    pub dom_any: bool,
    /// Whether the day-of-week field was `*` or `?`.
    pub dow_any: bool,
}

/// A problem in a cron string: the byte range of the offending text and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronError {
    /// Byte range inside the cron string.
    pub range: Range<usize>,
    /// Lowercase message, no trailing period.
    pub message: String,
    /// A hint, if one helps.
    pub hint: Option<String>,
}

impl CronError {
    fn new(range: Range<usize>, message: String) -> Self {
        CronError {
            range,
            message,
            hint: None,
        }
    }
}

impl Schedule {
    /// Whether the schedule fires at this minute (all values 0-based as in cron: `dow` 0 is
    /// Sunday). Day of month and day of week combine the way cron does: when both are
    /// restricted, either one matching is enough.
    pub fn matches(&self, minute: u32, hour: u32, dom: u32, month: u32, dow: u32) -> bool {
        let bit = |set: u64, v: u32| v < 64 && set & (1u64 << v) != 0;
        let day = if self.dom_any || self.dow_any {
            bit(self.days_of_month, dom) && bit(self.days_of_week, dow)
        } else {
            bit(self.days_of_month, dom) || bit(self.days_of_week, dow)
        };
        bit(self.minutes, minute) && bit(self.hours, hour) && bit(self.months, month) && day
    }

    /// The shortest gap between two runs, in minutes, ignoring gaps that only occur across
    /// days (those are never shorter than the gaps inside an hour or between two hours).
    pub fn shortest_interval_minutes(&self) -> u32 {
        let minutes: Vec<u32> = (0..60)
            .filter(|m| self.minutes & (1u64 << m) != 0)
            .collect();
        let mut best = u32::MAX;
        for w in minutes.windows(2) {
            best = best.min(w[1] - w[0]);
        }
        // From the last minute of an hour to the first of the next one, when two adjacent
        // hours are both selected.
        let adjacent_hours = (0..24)
            .any(|h| self.hours & (1u64 << h) != 0 && self.hours & (1u64 << ((h + 1) % 24)) != 0);
        if let (Some(first), Some(last)) = (minutes.first(), minutes.last())
            && adjacent_hours
        {
            best = best.min(60 - last + first);
        }
        best
    }
}

/// Parses a cron string. Every problem is an [`Err`] entry; the first one is usually enough.
pub fn parse(text: &str) -> Result<Schedule, Vec<CronError>> {
    // Fields with their byte ranges.
    let mut fields: Vec<(usize, &str)> = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c == ' ' || c == '\t', start) {
            (true, Some(s)) => {
                fields.push((s, &text[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        fields.push((s, &text[s..]));
    }
    if fields.len() != 5 {
        let range = if fields.len() > 5 {
            fields[5].0..text.len()
        } else {
            0..text.len()
        };
        return Err(vec![
            CronError::new(
                range,
                format!(
                    "invalid cron `{text}`: expected 5 fields, found {}",
                    fields.len()
                ),
            )
            .hint("the fields are minute, hour, day of month, month and day of week, as in `30 5 * * 1-5`"),
        ]);
    }
    let mut errors = Vec::new();
    let mut sets = [0u64; 5];
    let mut any = [false; 5];
    for (i, ((off, f), spec)) in fields.iter().zip(FIELDS).enumerate() {
        if *f == "*" || (*f == "?" && (i == 2 || i == 4)) {
            any[i] = true;
        }
        match parse_field(f, spec) {
            Ok(set) => sets[i] = set,
            Err(mut e) => {
                e.range = e.range.start + off..e.range.end + off;
                e.message = format!("{} in cron `{text}`", e.message);
                errors.push(e);
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Schedule {
        minutes: sets[0],
        hours: sets[1],
        days_of_month: sets[2],
        months: sets[3],
        days_of_week: sets[4],
        dom_any: any[2],
        dow_any: any[4],
    })
}

impl CronError {
    fn hint(mut self, hint: &str) -> Self {
        self.hint = Some(hint.to_owned());
        self
    }
}

/// Parses one field: a comma-separated list of `*`, `N`, `A-B`, each with an optional `/step`.
fn parse_field(text: &str, spec: Field) -> Result<u64, CronError> {
    let mut set = 0u64;
    let mut off = 0;
    for item in text.split(',') {
        let range = off..off + item.len();
        off += item.len() + 1;
        if item.is_empty() {
            return Err(CronError::new(
                range.start..range.start + 1,
                format!("empty list item in the {} field", spec.name),
            ));
        }
        let (body, step) = match item.split_once('/') {
            Some((b, s)) => (b, Some((range.start + b.len() + 1, s))),
            None => (item, None),
        };
        let step = match step {
            None => 1,
            Some((soff, s)) => match s.parse::<u32>() {
                Ok(n) if n >= 1 => n,
                Ok(_) => {
                    return Err(CronError::new(
                        soff..soff + s.len(),
                        format!("step `{s}` of the {} field must be at least 1", spec.name),
                    ));
                }
                Err(_) => {
                    let len = s.len().max(1);
                    return Err(CronError::new(
                        soff..soff + len,
                        format!("step `{s}` of the {} field is not a number", spec.name),
                    ));
                }
            },
        };
        let (lo, hi) = if body == "*" || body == "?" {
            if body == "?" && !matches!(spec.name, "day of month" | "day of week") {
                return Err(CronError::new(
                    range.start..range.start + 1,
                    format!(
                        "`?` is only allowed in the day fields, not in the {} field",
                        spec.name
                    ),
                ));
            }
            (spec.min, spec.max)
        } else if let Some((a, b)) = body.split_once('-') {
            let lo = value(a, range.start, spec)?;
            let boff = range.start + a.len() + 1;
            let hi = value(b, boff, spec)?;
            if lo > hi {
                return Err(CronError::new(
                    range.start..range.start + body.len(),
                    format!(
                        "range `{body}` of the {} field is backwards: {lo} is after {hi}",
                        spec.name
                    ),
                ));
            }
            (lo, hi)
        } else {
            let v = value(body, range.start, spec)?;
            // `N/step` runs from N to the maximum, as in robfig/cron and Vixie cron.
            if item.contains('/') {
                (v, spec.max)
            } else {
                (v, v)
            }
        };
        let mut v = lo;
        while v <= hi {
            set |= 1u64 << v;
            v += step;
        }
    }
    Ok(set)
}

/// One number or name of a field, range-checked.
fn value(text: &str, off: usize, spec: Field) -> Result<u32, CronError> {
    let range = off..off + text.len().max(1);
    if text.is_empty() {
        return Err(CronError::new(
            range,
            format!("a value is missing in the {} field", spec.name),
        ));
    }
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(spec.min + u32::try_from(i).unwrap_or(0));
    }
    let Ok(v) = text.parse::<u32>() else {
        let mut e = CronError::new(
            range,
            format!("`{text}` is not a valid value for the {} field", spec.name),
        );
        if !spec.names.is_empty() {
            e = e.hint(&format!(
                "use a number {}-{} or a name `{}`-`{}`",
                spec.min,
                spec.max,
                spec.names[0],
                spec.names[spec.names.len() - 1]
            ));
        }
        return Err(e);
    };
    if v < spec.min || v > spec.max {
        return Err(CronError::new(
            range,
            format!(
                "{} `{v}` is out of range: it must be between {} and {}",
                spec.name, spec.min, spec.max
            ),
        ));
    }
    Ok(v)
}

/// Checks one `cron:` value and reports problems at their position inside the string.
pub fn check_cron(cron: &YStr, source: &SourceFile, out: &mut Vec<Diagnostic>) {
    if cron.text.is_empty() || cron.has_expr() {
        // Empty values are reported by the loader; GitHub does not expand expressions here.
        return;
    }
    match parse(&cron.text) {
        Err(errors) => {
            for e in errors {
                let mut d = Diagnostic::error("events", cron.span_of(source, e.range), e.message);
                if let Some(h) = e.hint {
                    d = d.with_hint(h);
                }
                out.push(d);
            }
        }
        Ok(s) => {
            let every = s.shortest_interval_minutes();
            if every < SHORTEST_INTERVAL_MINUTES {
                let what = if every == 1 {
                    "every minute".to_owned()
                } else {
                    format!("every {every} minutes")
                };
                out.push(
                    Diagnostic::lint(
                        "events",
                        cron.span,
                        format!(
                            "schedule `{}` runs {what}, but GitHub runs schedules at most once every {SHORTEST_INTERVAL_MINUTES} minutes",
                            cron.text
                        ),
                    )
                    .with_hint("use a step of at least 5 in the minute field, as in `*/5 * * * *`"),
                );
            }
        }
    }
}

/// IANA areas (the first part of `Area/Location` names), including the `backward` links
/// that are still common (`US/Eastern`).
const TZ_AREAS: &[&str] = &[
    "Africa",
    "America",
    "Antarctica",
    "Arctic",
    "Asia",
    "Atlantic",
    "Australia",
    "Brazil",
    "Canada",
    "Chile",
    "Etc",
    "Europe",
    "Indian",
    "Mexico",
    "Pacific",
    "US",
];

/// Zone names without an area that the tz database still carries.
const TZ_SINGLE: &[&str] = &[
    "UTC",
    "GMT",
    "UCT",
    "Universal",
    "Zulu",
    "Greenwich",
    "CET",
    "CST6CDT",
    "EET",
    "EST",
    "EST5EDT",
    "HST",
    "MET",
    "MST",
    "MST7MDT",
    "PST8PDT",
    "WET",
];

/// Whether `name` has the shape of an IANA time zone name: `UTC`, a legacy single name, or
/// `Area/Location[/Sub]` with a known area and parts made of letters, digits, `_`, `-`, `+`.
pub fn is_timezone(name: &str) -> bool {
    if TZ_SINGLE.contains(&name) {
        return true;
    }
    let mut parts = name.split('/');
    let Some(area) = parts.next() else {
        return false;
    };
    let rest: Vec<&str> = parts.collect();
    TZ_AREAS.contains(&area)
        && !rest.is_empty()
        && rest.len() <= 2
        && rest.iter().all(|p| {
            p.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        })
}

/// Checks a schedule's `timezone:` value.
pub fn check_timezone(tz: &YStr, out: &mut Vec<Diagnostic>) {
    if tz.has_expr() || tz.text.is_empty() || is_timezone(&tz.text) {
        return;
    }
    out.push(
        Diagnostic::error(
            "events",
            tz.span,
            format!("`{}` is not an IANA time zone name", tz.text),
        )
        .with_hint(
            "use a name from the tz database, such as `UTC`, `Europe/Paris` or `America/New_York`",
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::FileId;

    fn err(text: &str) -> (Range<usize>, String) {
        let e = parse(text).expect_err(text);
        (e[0].range.clone(), e[0].message.clone())
    }

    #[test]
    fn valid_forms() {
        for c in [
            "0 0 * * *",
            "*/15 * * * *",
            "30 5,17 * * 1-5",
            "0 12 1 JAN-MAR mon",
            "0 0 ? * MON-FRI",
            "5/15 * * * *",
            "0-30/10 9-17 1,15 * SUN,sat",
            "  0\t0 * * *  ",
        ] {
            assert!(parse(c).is_ok(), "{c}: {:?}", parse(c));
        }
    }

    #[test]
    fn errors_point_at_the_field() {
        assert_eq!(err("0 0 * * 7").0, 8..9);
        assert!(
            err("0 0 * * 7")
                .1
                .contains("day of week `7` is out of range")
        );
        assert_eq!(err("60 * * * *").0, 0..2);
        assert_eq!(err("0 24 * * *").0, 2..4);
        assert_eq!(err("0 0 0 * *").0, 4..5);
        assert_eq!(err("0 0 * 13 *").0, 6..8);
        assert_eq!(err("0 0 * FOO *").0, 6..9);
        assert_eq!(err("0 0 * * 5-1").0, 8..11);
        assert!(err("0 0 * * 5-1").1.contains("backwards"));
        assert_eq!(err("*/0 * * * *").0, 2..3);
        assert_eq!(err("*/x * * * *").0, 2..3);
        assert_eq!(err("1,,2 * * * *").0, 2..3);
        assert_eq!(err("? * * * *").0, 0..1);
        assert_eq!(err("0 0 * * L").0, 8..9);
        assert!(err("0 0 * *").1.contains("expected 5 fields, found 4"));
        assert_eq!(err("0 0 * * * 2026").0, 10..14);
        assert!(err("").1.contains("found 0"));
        assert!(err("@daily").1.contains("found 1"));
    }

    #[test]
    fn intervals() {
        let every = |c: &str| parse(c).expect(c).shortest_interval_minutes();
        assert_eq!(every("* * * * *"), 1);
        assert_eq!(every("*/2 * * * *"), 2);
        assert_eq!(every("*/5 * * * *"), 5);
        assert_eq!(every("0,3 * * * *"), 3);
        assert_eq!(every("0,58 * * * *"), 2);
        assert_eq!(every("0,58 1 * * *"), 58);
        assert_eq!(every("0 * * * *"), 60);
        assert_eq!(every("30 5 * * *"), u32::MAX);
    }

    #[test]
    fn matching() {
        let s = parse("30 5 * * 1-5").expect("valid");
        assert!(s.matches(30, 5, 10, 3, 1));
        assert!(!s.matches(30, 5, 10, 3, 0));
        assert!(!s.matches(31, 5, 10, 3, 1));
        // Both day fields restricted: either matches (cron's rule).
        let s = parse("0 0 1 * MON").expect("valid");
        assert!(s.matches(0, 0, 1, 6, 3));
        assert!(s.matches(0, 0, 9, 6, 1));
        assert!(!s.matches(0, 0, 9, 6, 3));
        let s = parse("0 0 1 FEB *").expect("valid");
        assert!(s.matches(0, 0, 1, 2, 4));
        assert!(!s.matches(0, 0, 1, 3, 4));
    }

    #[test]
    fn timezones() {
        for ok in [
            "UTC",
            "Europe/Paris",
            "America/Argentina/Buenos_Aires",
            "America/Port-au-Prince",
            "Etc/GMT+5",
            "US/Eastern",
        ] {
            assert!(is_timezone(ok), "{ok}");
        }
        for bad in [
            "",
            "utc",
            "Paris",
            "Europe/",
            "Mars/Olympus",
            "Europe/Par is",
            "+02:00",
        ] {
            assert!(!is_timezone(bad), "{bad}");
        }
    }

    #[test]
    fn diagnostics_land_inside_the_string() {
        let src = "cron: '0 0 * * 7'\n";
        let root = crate::yaml::load(FileId(0), src).root.expect("root");
        let y = YStr::from_node(root.get("cron").expect("cron")).expect("str");
        let f = SourceFile::new("t.yml", src);
        let mut out = Vec::new();
        check_cron(&y, &f, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(f.slice(out[0].span), "7");
        assert!(out[0].is_error());
        let src = "cron: '*/2 * * * *'\n";
        let root = crate::yaml::load(FileId(0), src).root.expect("root");
        let y = YStr::from_node(root.get("cron").expect("cron")).expect("str");
        let mut out = Vec::new();
        check_cron(&y, &SourceFile::new("t.yml", src), &mut out);
        assert_eq!(out.len(), 1);
        assert!(!out[0].is_error());
        assert!(out[0].message.contains("every 2 minutes"));
    }
}
