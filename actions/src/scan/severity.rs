//! The severity policy (scan.md §11.6), deterministic and explainable:
//!
//! 1. the base score of the record's CVSS vectors, preferring the newest CVSS version present
//!    (v4 over v3 over v2) and the highest score within it, rated 0.1–3.9 LOW, 4.0–6.9
//!    MEDIUM, 7.0–8.9 HIGH, 9.0–10 CRITICAL (a score of 0.0 rates LOW: it was still reported);
//! 2. otherwise the source's word in `database_specific.severity` (GHSA's `MODERATE` is
//!    MEDIUM);
//! 3. otherwise UNKNOWN, which gates as `--unknown-severity-as` (MEDIUM by default).

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::osv::{Rated, SeverityEntry};

/// A severity rating; the order is the gate order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// No usable severity.
    Unknown,
    /// Low.
    Low,
    /// Medium (GHSA: moderate).
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Parses a severity name, case-insensitively; `moderate` is MEDIUM.
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "UNKNOWN" => Severity::Unknown,
            "LOW" => Severity::Low,
            "MEDIUM" | "MODERATE" => Severity::Medium,
            "HIGH" => Severity::High,
            "CRITICAL" => Severity::Critical,
            _ => return None,
        })
    }

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    /// The rating of a CVSS base score.
    pub fn of_score(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else {
            Severity::Low
        }
    }

    /// A representative score for GitHub's `security-severity` when there is no vector.
    pub fn nominal_score(self) -> f64 {
        match self {
            Severity::Critical => 9.5,
            Severity::High => 8.0,
            Severity::Medium => 5.5,
            Severity::Low => 2.0,
            Severity::Unknown => 0.0,
        }
    }

    /// All ratings from the highest down.
    pub const DESCENDING: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Unknown,
    ];
}

/// The base score of one vector, or `None` when it does not parse.
fn score_of(entry: &SeverityEntry) -> Option<(u8, f64)> {
    let version = match entry.kind.as_str() {
        "CVSS_V4" => 4,
        "CVSS_V3" => 3,
        "CVSS_V2" => 2,
        _ => return None,
    };
    let v = entry.score.trim();
    let score = if version == 2 {
        // CVSS v2 vectors carry no `CVSS:2.0/` prefix in OSV.
        cvss::v2::Vector::from_str(v.trim_start_matches("CVSS:2.0/"))
            .ok()?
            .score()
            .value()
    } else {
        cvss::Cvss::from_str(v).ok()?.score()
    };
    Some((version, (score * 10.0).round() / 10.0))
}

/// Rates a record (or an affected entry) by the policy above.
pub fn rate(entries: &[SeverityEntry], word: Option<&str>) -> Rated {
    let best = entries
        .iter()
        .filter_map(|e| score_of(e).map(|(v, s)| (v, s, e)))
        .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    if let Some((version, score, entry)) = best {
        return Rated {
            severity: Severity::of_score(score),
            source: format!("cvss_v{version}"),
            vector: Some(entry.score.clone()),
            score: Some(score),
        };
    }
    if let Some(s) = word.and_then(Severity::parse) {
        return Rated {
            severity: s,
            source: "database_specific".into(),
            vector: None,
            score: None,
        };
    }
    Rated {
        severity: Severity::Unknown,
        source: "none".into(),
        vector: None,
        score: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: &str, score: &str) -> SeverityEntry {
        SeverityEntry {
            kind: kind.into(),
            score: score.into(),
        }
    }

    #[test]
    fn cvss_scores() {
        let r = rate(
            &[e("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")],
            None,
        );
        assert_eq!(r.score, Some(9.8));
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(r.source, "cvss_v3");
        let r = rate(&[e("CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:P/A:P")], None);
        assert_eq!(r.score, Some(7.5));
        // v4 wins over v3 even when lower.
        let r = rate(
            &[
                e("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
                e(
                    "CVSS_V4",
                    "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N",
                ),
            ],
            None,
        );
        assert_eq!(r.source, "cvss_v4");
        assert_eq!(r.severity, Severity::Medium);
    }

    #[test]
    fn words_and_unknown() {
        assert_eq!(rate(&[], Some("MODERATE")).severity, Severity::Medium);
        assert_eq!(rate(&[], None).severity, Severity::Unknown);
        assert_eq!(
            rate(&[e("CVSS_V3", "garbage")], None).severity,
            Severity::Unknown
        );
    }
}
