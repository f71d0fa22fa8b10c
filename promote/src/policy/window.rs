//! Time windows (`gates.windows.allow` / `deny`): one-off ranges and recurring windows
//! (`rrule: FREQ=DAILY|WEEKLY[;BYDAY=MO,…]`, `start`, `duration`), in a time zone.
//!
//! An environment is open when no deny window is active and, if there are allow windows, at
//! least one of them is (Kargo's promotion-window semantics).

use jiff::civil::{DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// One window.
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    /// Its name.
    pub name: String,
    /// Its shape.
    pub kind: WindowKind,
    /// IANA time zone name (`UTC` by default).
    pub tz: String,
}

/// A window's shape.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// From one local date-time to another.
    Range {
        /// Start (inclusive).
        from: DateTime,
        /// End (exclusive).
        to: DateTime,
    },
    /// Every day (or the listed weekdays) from `start` for `duration`.
    Recurring {
        /// Weekdays; empty = every day.
        #[serde(serialize_with = "weekday_names")]
        days: Vec<Weekday>,
        /// Local start time.
        start: Time,
        /// Length.
        duration: SignedDuration,
    },
}

fn weekday_names<S: serde::Serializer>(days: &[Weekday], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq as _;
    let mut seq = s.serialize_seq(Some(days.len()))?;
    for d in days {
        seq.serialize_element(&format!("{d:?}"))?;
    }
    seq.end()
}

/// Parses the `rrule` subset: `FREQ=DAILY` or `FREQ=WEEKLY` with optional `BYDAY=MO,TU,…`.
pub fn parse_rrule(text: &str) -> Result<Vec<Weekday>, String> {
    let mut freq = None;
    let mut days = Vec::new();
    for part in text.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not `KEY=VALUE`"))?;
        match k.to_ascii_uppercase().as_str() {
            "FREQ" => freq = Some(v.to_ascii_uppercase()),
            "BYDAY" => {
                for d in v.split(',') {
                    days.push(match d.to_ascii_uppercase().as_str() {
                        "MO" => Weekday::Monday,
                        "TU" => Weekday::Tuesday,
                        "WE" => Weekday::Wednesday,
                        "TH" => Weekday::Thursday,
                        "FR" => Weekday::Friday,
                        "SA" => Weekday::Saturday,
                        "SU" => Weekday::Sunday,
                        other => return Err(format!("unknown weekday `{other}`")),
                    });
                }
            }
            other => {
                return Err(format!(
                    "`{other}` is not supported (only `FREQ` and `BYDAY`)"
                ));
            }
        }
    }
    match freq.as_deref() {
        Some("DAILY") if days.is_empty() => Ok(days),
        Some("WEEKLY") if !days.is_empty() => Ok(days),
        Some("WEEKLY") => Err("`FREQ=WEEKLY` needs `BYDAY`".into()),
        Some("DAILY") => Err("`FREQ=DAILY` takes no `BYDAY`".into()),
        Some(f) => Err(format!("`FREQ={f}` is not supported (`DAILY` or `WEEKLY`)")),
        None => Err("missing `FREQ`".into()),
    }
}

impl Window {
    /// Whether the window is active at `t`.
    pub fn is_open(&self, t: Timestamp) -> bool {
        let tz = TimeZone::get(&self.tz).unwrap_or(TimeZone::UTC);
        match &self.kind {
            WindowKind::Range { from, to } => {
                let (Ok(a), Ok(b)) = (tz.to_timestamp(*from), tz.to_timestamp(*to)) else {
                    return false;
                };
                a <= t && t < b
            }
            WindowKind::Recurring {
                days,
                start,
                duration,
            } => {
                let local = t.to_zoned_datetime(tz.clone()).date();
                // A window can start on an earlier day and still be open now.
                let back = duration.as_secs().div_euclid(86_400) + 1;
                (0..=back).any(|d| {
                    let Ok(day) = local.checked_sub(jiff::Span::new().days(d)) else {
                        return false;
                    };
                    if !days.is_empty() && !days.contains(&day.weekday()) {
                        return false;
                    }
                    let Ok(begin) = tz.to_timestamp(day.to_datetime(*start)) else {
                        return false;
                    };
                    let Ok(end) = begin.checked_add(*duration) else {
                        return false;
                    };
                    begin <= t && t < end
                })
            }
        }
    }
}

/// Whether an environment with these windows is open at `t`; the names of the windows that
/// decided (the active deny windows, or the open allow window).
pub fn open_at(deny: &[Window], allow: &[Window], t: Timestamp) -> (bool, Vec<String>) {
    let denied: Vec<String> = deny
        .iter()
        .filter(|w| w.is_open(t))
        .map(|w| w.name.clone())
        .collect();
    if !denied.is_empty() {
        return (false, denied);
    }
    if allow.is_empty() {
        return (true, Vec::new());
    }
    let open: Vec<String> = allow
        .iter()
        .filter(|w| w.is_open(t))
        .map(|w| w.name.clone())
        .collect();
    (!open.is_empty(), open)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn weekly_window_in_a_time_zone() {
        let w = Window {
            name: "business-hours".into(),
            kind: WindowKind::Recurring {
                days: parse_rrule("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH").expect("rrule"),
                start: Time::constant(9, 0, 0, 0),
                duration: SignedDuration::from_hours(8),
            },
            tz: "America/New_York".into(),
        };
        // 2026-11-23 is a Monday; 09:00 in New York is 14:00 UTC (EST).
        assert!(!w.is_open(ts("2026-11-23T13:59:59Z")));
        assert!(w.is_open(ts("2026-11-23T14:00:00Z")));
        assert!(w.is_open(ts("2026-11-23T21:59:59Z")));
        assert!(!w.is_open(ts("2026-11-23T22:00:00Z")));
        // Friday.
        assert!(!w.is_open(ts("2026-11-27T15:00:00Z")));
    }

    #[test]
    fn windows_that_span_midnight_and_deny_wins() {
        let night = Window {
            name: "night".into(),
            kind: WindowKind::Recurring {
                days: vec![],
                start: Time::constant(22, 0, 0, 0),
                duration: SignedDuration::from_hours(4),
            },
            tz: "UTC".into(),
        };
        assert!(night.is_open(ts("2026-11-24T01:00:00Z")));
        assert!(!night.is_open(ts("2026-11-24T02:00:00Z")));
        let freeze = Window {
            name: "freeze".into(),
            kind: WindowKind::Range {
                from: "2026-11-24T00:00".parse().expect("dt"),
                to: "2026-11-25T00:00".parse().expect("dt"),
            },
            tz: "UTC".into(),
        };
        let (open, why) = open_at(
            std::slice::from_ref(&freeze),
            std::slice::from_ref(&night),
            ts("2026-11-24T01:00:00Z"),
        );
        assert!(!open);
        assert_eq!(why, ["freeze"]);
        let (open, why) = open_at(&[freeze], &[night], ts("2026-11-25T01:00:00Z"));
        assert!(open);
        assert_eq!(why, ["night"]);
    }

    #[test]
    fn rrule_subset_errors() {
        assert!(parse_rrule("FREQ=MONTHLY").is_err());
        assert!(parse_rrule("FREQ=WEEKLY").is_err());
        assert!(parse_rrule("FREQ=WEEKLY;BYDAY=XX").is_err());
        assert_eq!(parse_rrule("FREQ=DAILY").expect("daily"), vec![]);
    }
}
