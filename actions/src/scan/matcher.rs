//! Matching packages against advisories (scan.md §7): the OSV evaluation algorithm over each
//! range's events sorted in the ecosystem's order, plus exact hits in `versions` lists.
//!
//! Only registry packages are matched (path, git and other-registry packages describe code
//! the registry advisories do not speak about, as cargo-audit decides too). Records that
//! describe the same vulnerability (id or alias in common, e.g. PYSEC and GHSA) are merged
//! into one finding per package, under the ecosystem-native id.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::db::{Db, DbError, Hit};
use super::inventory::{Origin, Package};
use super::osv::{Advisory, AffectedEntry, Kind, Range, Rated};
use super::severity::Severity;
use super::version::{Scheme, Version};

/// One advisory matching one package.
#[derive(Clone, Debug)]
pub struct Match {
    /// Index into the inventory's packages.
    pub package: usize,
    /// The advisory (primary of a merged group).
    pub advisory: Advisory,
    /// Other ids of the merged group, with all aliases, sorted.
    pub aliases: Vec<String>,
    /// The finding kind.
    pub kind: Kind,
    /// The severity.
    pub severity: Rated,
    /// Fixed versions above the installed one, in version order.
    pub fixed: Vec<String>,
    /// The affected ranges in words (`>= 0.6.3, < 0.6.14`).
    pub affected: Vec<String>,
    /// OS/arch note.
    pub platform: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Introduced,
    Fixed,
    LastAffected,
    Limit,
}

/// A range's events, parsed and sorted; `None` when an event does not parse (the range is
/// then not used, rather than guessed).
fn events(scheme: Scheme, range: &Range) -> Option<Vec<(Option<Version>, Ev, String)>> {
    let mut out = Vec::new();
    for e in &range.events {
        let (text, kind) = if let Some(v) = &e.introduced {
            (v, Ev::Introduced)
        } else if let Some(v) = &e.fixed {
            (v, Ev::Fixed)
        } else if let Some(v) = &e.last_affected {
            (v, Ev::LastAffected)
        } else if let Some(v) = &e.limit {
            (v, Ev::Limit)
        } else {
            continue;
        };
        // `introduced: "0"` means "from the beginning" in every ecosystem.
        let parsed = if kind == Ev::Introduced && text == "0" {
            None
        } else if kind == Ev::Limit && text == "*" {
            continue;
        } else {
            Some(scheme.parse(text)?)
        };
        out.push((parsed, kind, text.clone()));
    }
    // `None` (the "0" floor) sorts first; at equal versions an introduction comes first.
    out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    Some(out)
}

fn in_range(v: &Version, evs: &[(Option<Version>, Ev, String)]) -> bool {
    let mut vulnerable = false;
    for (ev_v, kind, _) in evs {
        let le = |x: &Option<Version>| x.as_ref().is_none_or(|x| x <= v);
        match kind {
            Ev::Introduced if le(ev_v) => vulnerable = true,
            Ev::Fixed | Ev::Limit if le(ev_v) => vulnerable = false,
            Ev::LastAffected if ev_v.as_ref().is_some_and(|x| x < v) => vulnerable = false,
            _ => {}
        }
    }
    vulnerable
}

fn describe(evs: &[(Option<Version>, Ev, String)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for (_, kind, text) in evs {
        match kind {
            Ev::Introduced => {
                if let Some(c) = cur.take() {
                    out.push(c);
                }
                cur = Some(if text == "0" || text == "0.0.0-0" {
                    String::new()
                } else {
                    format!(">= {text}")
                });
            }
            Ev::Fixed | Ev::Limit | Ev::LastAffected => {
                let op = if *kind == Ev::LastAffected { "<=" } else { "<" };
                let lower = cur.take().unwrap_or_default();
                out.push(if lower.is_empty() {
                    format!("{op} {text}")
                } else {
                    format!("{lower}, {op} {text}")
                });
            }
        }
    }
    if let Some(c) = cur {
        out.push(if c.is_empty() { "*".into() } else { c });
    }
    out
}

/// An affected entry with its events parsed and described once, for all the installed
/// versions it is checked against (a lockfile holds one crate in several versions, and
/// parsing versions was most of the matching time).
pub struct Prepared<'a> {
    entry: &'a AffectedEntry,
    ranges: Vec<Vec<(Option<Version>, Ev, String)>>,
    described: Vec<String>,
}

impl<'a> Prepared<'a> {
    /// Parses an entry's ranges for a scheme (`GIT` ranges and ranges with an event that does
    /// not parse are left out).
    pub fn new(scheme: Scheme, entry: &'a AffectedEntry) -> Prepared<'a> {
        let ranges: Vec<_> = entry
            .ranges
            .iter()
            .filter(|r| r.kind != "GIT")
            .filter_map(|r| events(scheme, r))
            .collect();
        let mut described: Vec<String> = ranges.iter().flat_map(|e| describe(e)).collect();
        if described.is_empty() && !entry.versions.is_empty() {
            described.push(format!("{} listed versions", entry.versions.len()));
        }
        Prepared {
            entry,
            ranges,
            described,
        }
    }

    /// `Some((fixed versions above the installed one, ranges in words))` when the installed
    /// version is affected.
    pub fn evaluate(&self, scheme: Scheme, installed: &str) -> Option<(Vec<String>, Vec<String>)> {
        self.evaluate_parsed(scheme, installed, &scheme.parse(installed))
    }

    /// [`Prepared::evaluate`] with the installed version parsed by the caller (once per
    /// package, not once per advisory).
    fn evaluate_parsed(
        &self,
        scheme: Scheme,
        installed: &str,
        v: &Option<Version>,
    ) -> Option<(Vec<String>, Vec<String>)> {
        let listed = || {
            self.entry.versions.iter().any(|x| {
                x == installed
                    || v.as_ref()
                        .is_some_and(|v| scheme.parse(x).is_some_and(|x| x == *v))
            })
        };
        let in_ranges = v
            .as_ref()
            .is_some_and(|v| self.ranges.iter().any(|evs| in_range(v, evs)));
        if !in_ranges && !listed() {
            return None;
        }
        let mut fixed: Vec<(&Version, &String)> = Vec::new();
        if let Some(v) = v {
            for (ev_v, kind, text) in self.ranges.iter().flatten() {
                if *kind == Ev::Fixed
                    && let Some(f) = ev_v
                    && f > v
                {
                    fixed.push((f, text));
                }
            }
        }
        fixed.sort_by(|a, b| a.0.cmp(b.0));
        fixed.dedup_by(|a, b| a.0.cmp(b.0) == Ordering::Equal);
        Some((
            fixed.into_iter().map(|f| f.1.clone()).collect(),
            self.described.clone(),
        ))
    }
}

/// Evaluates one affected entry for an installed version: `Some((fixed, ranges))` when it
/// matches.
pub fn evaluate(
    scheme: Scheme,
    installed: &str,
    entry: &AffectedEntry,
) -> Option<(Vec<String>, Vec<String>)> {
    Prepared::new(scheme, entry).evaluate(scheme, installed)
}

/// Sorts and dedups version strings in the scheme's order (text order for what does not
/// parse).
fn sort_versions(scheme: Scheme, v: &mut Vec<String>) {
    if v.len() > 1 {
        v.sort_by(|a, b| match (scheme.parse(a), scheme.parse(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => a.cmp(b),
        });
        v.dedup();
    }
}

/// Ecosystem-native ids win over GHSA and CVE when records are merged.
fn id_rank(id: &str) -> (u8, &str) {
    let generic = id.starts_with("GHSA-") || id.starts_with("CVE-");
    (u8::from(generic), id)
}

/// Matches every registry package against the database.
pub fn match_all(db: &Db, packages: &[Package]) -> Result<Vec<Match>, DbError> {
    let mut out = Vec::new();
    // One query per ecosystem for every name in it (a lockfile often holds one crate in
    // several versions, a monorepo one package in many lockfiles).
    let mut by_eco: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in packages.iter().filter(|p| p.origin == Origin::Registry) {
        by_eco
            .entry(p.ecosystem.as_str())
            .or_default()
            .push(p.match_key().0);
    }
    let mut hits_of: HashMap<&str, HashMap<String, Vec<Hit>>> = HashMap::new();
    for (eco, names) in by_eco {
        hits_of.insert(eco, db.lookup_many(eco, &names)?);
    }
    let prepared: HashMap<(&str, &str), Vec<(&Hit, Prepared<'_>)>> = hits_of
        .iter()
        .flat_map(|(eco, m)| {
            let scheme = Scheme::for_ecosystem(eco);
            m.iter().map(move |(name, hits)| {
                let p = hits
                    .iter()
                    .map(|h| (h, Prepared::new(scheme, &h.entry)))
                    .collect();
                ((*eco, name.as_str()), p)
            })
        })
        .collect();
    for (i, p) in packages.iter().enumerate() {
        if p.origin != Origin::Registry {
            continue;
        }
        let scheme = Scheme::for_ecosystem(&p.ecosystem);
        let (name, version) = p.match_key();
        let key = super::db::normalize_name(&p.ecosystem, name);
        let Some(hits) = prepared.get(&(p.ecosystem.as_str(), key.as_str())) else {
            continue;
        };
        let parsed = scheme.parse(version);
        let mut found: Vec<(&Hit, Vec<String>, Vec<String>)> = Vec::new();
        for (hit, prep) in hits {
            if let Some((fixed, ranges)) = prep.evaluate_parsed(scheme, version, &parsed) {
                // Several affected entries of one record for the same package: merge them.
                if let Some(prev) = found
                    .iter_mut()
                    .find(|(h, _, _)| h.advisory.id == hit.advisory.id)
                {
                    prev.1.extend(fixed);
                    prev.2.extend(ranges);
                    continue;
                }
                found.push((hit, fixed, ranges));
            }
        }
        out.extend(merge_aliases(i, scheme, found));
    }
    Ok(out)
}

fn merge_aliases(
    package: usize,
    scheme: Scheme,
    found: Vec<(&Hit, Vec<String>, Vec<String>)>,
) -> Vec<Match> {
    // Union-find over the small set of hits of one package.
    let n = found.len();
    let mut group: Vec<usize> = (0..n).collect();
    let ids = |h: &Hit| -> BTreeSet<String> {
        let mut s: BTreeSet<String> = h.advisory.aliases.iter().cloned().collect();
        s.insert(h.advisory.id.clone());
        s
    };
    // Records of one database stay apart even when they share an alias (RustSec has
    // several advisories naming one CVE, and cargo-audit reports each); records of
    // different databases describing the same vulnerability merge.
    let source = |k: usize| found[k].0.advisory.id.split('-').next().unwrap_or("");
    if (1..n).all(|k| source(k) == source(0)) {
        // One database, the common case: nothing can merge.
        return found
            .into_iter()
            .map(|(hit, mut fixed, mut affected)| {
                sort_versions(scheme, &mut fixed);
                affected.dedup();
                Match {
                    package,
                    advisory: hit.advisory.clone(),
                    aliases: hit.advisory.aliases.clone(),
                    kind: hit.entry.kind,
                    severity: hit
                        .entry
                        .severity
                        .clone()
                        .unwrap_or(hit.advisory.severity.clone()),
                    fixed,
                    affected,
                    platform: hit.entry.platform.clone(),
                }
            })
            .collect();
    }
    let sets: Vec<BTreeSet<String>> = found.iter().map(|(h, _, _)| ids(h)).collect();
    for a in 0..n {
        for b in (a + 1)..n {
            if source(a) != source(b) && !sets[a].is_disjoint(&sets[b]) {
                let (ga, gb) = (group[a], group[b]);
                for g in group.iter_mut() {
                    if *g == gb {
                        *g = ga;
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut roots: Vec<usize> = group.clone();
    roots.sort();
    roots.dedup();
    for root in roots {
        let members: Vec<usize> = (0..n).filter(|&k| group[k] == root).collect();
        let Some(&primary) = members.iter().min_by(|&&a, &&b| {
            id_rank(&found[a].0.advisory.id).cmp(&id_rank(&found[b].0.advisory.id))
        }) else {
            continue;
        };
        let (hit, _, _) = &found[primary];
        let mut aliases: BTreeSet<String> = BTreeSet::new();
        let mut fixed: Vec<String> = Vec::new();
        let mut affected: Vec<String> = Vec::new();
        // The entry's own severity overrides the record's; a merged record fills in an
        // UNKNOWN one.
        let own = |h: &Hit| {
            h.entry
                .severity
                .clone()
                .unwrap_or(h.advisory.severity.clone())
        };
        let mut severity = own(hit);
        for &m in &members {
            let (h, f, r) = &found[m];
            aliases.extend(sets[m].iter().cloned());
            fixed.extend(f.iter().cloned());
            affected.extend(r.iter().cloned());
            let s = own(h);
            if severity.severity == Severity::Unknown && s.severity != Severity::Unknown {
                severity = s;
            }
        }
        aliases.remove(&hit.advisory.id);
        sort_versions(scheme, &mut fixed);
        affected.dedup();
        out.push(Match {
            package,
            advisory: hit.advisory.clone(),
            aliases: aliases.into_iter().collect(),
            kind: hit.entry.kind,
            severity,
            fixed,
            affected,
            platform: hit.entry.platform.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::osv::Event;

    fn ev(kind: &str, v: &str) -> Event {
        let mut e = Event::default();
        let s = Some(v.to_owned());
        match kind {
            "i" => e.introduced = s,
            "f" => e.fixed = s,
            "l" => e.last_affected = s,
            _ => e.limit = s,
        }
        e
    }

    fn entry(kind: &str, events: Vec<Event>, versions: &[&str]) -> AffectedEntry {
        AffectedEntry {
            ranges: vec![Range {
                kind: kind.into(),
                events,
            }],
            versions: versions.iter().map(|s| (*s).to_owned()).collect(),
            kind: Kind::Vulnerability,
            severity: None,
            platform: None,
        }
    }

    #[test]
    fn events_walk() {
        let e = entry(
            "SEMVER",
            vec![
                ev("i", "0.6.3"),
                ev("f", "0.6.14"),
                ev("i", "1.0.0"),
                ev("f", "1.6.1"),
            ],
            &[],
        );
        let s = Scheme::SemVer;
        assert!(evaluate(s, "0.6.2", &e).is_none());
        assert_eq!(
            evaluate(s, "0.6.5", &e).map(|x| x.0),
            Some(vec!["0.6.14".to_owned(), "1.6.1".to_owned()])
        );
        assert!(evaluate(s, "0.6.14", &e).is_none());
        assert!(evaluate(s, "0.9.0", &e).is_none());
        assert_eq!(
            evaluate(s, "1.6.0", &e).map(|x| x.0),
            Some(vec!["1.6.1".to_owned()])
        );
        assert!(evaluate(s, "1.6.1", &e).is_none());
        // A pre-release of the fix is still vulnerable.
        assert!(evaluate(s, "1.6.1-alpha.1", &e).is_some());
    }

    #[test]
    fn last_affected_limit_and_lists() {
        let s = Scheme::SemVer;
        let e = entry("SEMVER", vec![ev("i", "0"), ev("l", "2.1.4")], &[]);
        assert!(evaluate(s, "2.1.4", &e).is_some());
        assert!(evaluate(s, "2.1.5", &e).is_none());
        assert_eq!(evaluate(s, "2.0.0", &e).map(|x| x.0), Some(vec![]));
        let e = entry("SEMVER", vec![ev("i", "1.0.0"), ev("limit", "1.5.0")], &[]);
        assert!(evaluate(s, "1.4.0", &e).is_some());
        assert!(evaluate(s, "1.5.0", &e).is_none());
        let e = entry("ECOSYSTEM", vec![], &["3.0.0-rc.1"]);
        assert!(evaluate(s, "3.0.0-rc.1", &e).is_some());
        assert!(evaluate(s, "3.0.0", &e).is_none());
        // Unknown ecosystems match only listed versions.
        let e = entry("ECOSYSTEM", vec![ev("i", "0"), ev("f", "2")], &["1.0"]);
        assert!(evaluate(Scheme::Unknown, "1.0", &e).is_some());
        assert!(evaluate(Scheme::Unknown, "1.5", &e).is_none());
    }

    #[test]
    fn describes_ranges() {
        let e = entry(
            "SEMVER",
            vec![ev("i", "0.0.0-0"), ev("f", "0.6.14"), ev("i", "1.0.0")],
            &[],
        );
        assert_eq!(
            evaluate(Scheme::SemVer, "1.2.0", &e).map(|x| x.1),
            Some(vec!["< 0.6.14".to_owned(), ">= 1.0.0".to_owned()])
        );
    }
}
