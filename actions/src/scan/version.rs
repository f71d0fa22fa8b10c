//! Version ordering per ecosystem (scan.md §7.1).
//!
//! Each ecosystem has its own notion of "newer": SemVer 2.0 precedence for crates.io, npm and
//! Go (Go pseudo-versions are SemVer pre-releases, `+incompatible` is build metadata), PEP 440
//! for PyPI (via `pep440_rs`), dpkg's algorithm for Debian and Ubuntu, apk-tools' for Alpine
//! and `Gem::Version` for RubyGems. A version that does not parse in its scheme is `None`: the
//! matcher then only accepts exact hits in an advisory's explicit `versions` list, never a
//! range guess, because a wrong guess is a false verdict.

use std::cmp::Ordering;
use std::str::FromStr;

/// How an ecosystem orders its versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// SemVer 2.0 (crates.io, npm).
    SemVer,
    /// Go module versions: SemVer with an optional `v` and `go` prefix.
    Go,
    /// PEP 440 (PyPI).
    Pep440,
    /// dpkg (Debian, Ubuntu).
    Debian,
    /// apk-tools (Alpine).
    Alpine,
    /// `Gem::Version` (RubyGems).
    RubyGems,
    /// No known ordering: only exact version lists match.
    Unknown,
}

impl Scheme {
    /// The scheme of an OSV ecosystem string (`Debian:12` uses Debian's, and so on).
    pub fn for_ecosystem(ecosystem: &str) -> Scheme {
        let base = ecosystem.split(':').next().unwrap_or(ecosystem);
        match base {
            "crates.io" | "npm" => Scheme::SemVer,
            "Go" => Scheme::Go,
            "PyPI" => Scheme::Pep440,
            "Debian" | "Ubuntu" => Scheme::Debian,
            "Alpine" => Scheme::Alpine,
            "RubyGems" => Scheme::RubyGems,
            _ => Scheme::Unknown,
        }
    }

    /// Parses a version in this scheme.
    pub fn parse(self, text: &str) -> Option<Version> {
        let t = text.trim();
        if t.is_empty() {
            return None;
        }
        Some(match self {
            Scheme::SemVer => Version::Sem(SemVer::parse(t)?),
            Scheme::Go => Version::Sem(SemVer::parse_go(t)?),
            Scheme::Pep440 => Version::Pep(Box::new(pep440_rs::Version::from_str(t).ok()?)),
            Scheme::Debian => Version::Deb(DebVersion::parse(t)?),
            Scheme::Alpine => Version::Apk(ApkVersion::parse(t)?),
            Scheme::RubyGems => Version::Gem(GemVersion::parse(t)?),
            Scheme::Unknown => return None,
        })
    }

    /// Compares two version strings; `None` when either does not parse.
    pub fn compare(self, a: &str, b: &str) -> Option<Ordering> {
        Some(self.parse(a)?.cmp(&self.parse(b)?))
    }
}

/// A parsed version of any scheme. Versions of different schemes never meet: the matcher
/// parses both sides with the package's scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Version {
    /// SemVer or Go.
    Sem(SemVer),
    /// PEP 440.
    Pep(Box<pep440_rs::Version>),
    /// dpkg.
    Deb(DebVersion),
    /// apk.
    Apk(ApkVersion),
    /// RubyGems.
    Gem(GemVersion),
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Version::Sem(a), Version::Sem(b)) => a.cmp(b),
            (Version::Pep(a), Version::Pep(b)) => a.cmp(b),
            (Version::Deb(a), Version::Deb(b)) => a.cmp(b),
            (Version::Apk(a), Version::Apk(b)) => a.cmp(b),
            (Version::Gem(a), Version::Gem(b)) => a.cmp(b),
            // Unreachable in practice; a fixed order keeps `Ord` total.
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Version {
    fn rank(&self) -> u8 {
        match self {
            Version::Sem(_) => 0,
            Version::Pep(_) => 1,
            Version::Deb(_) => 2,
            Version::Apk(_) => 3,
            Version::Gem(_) => 4,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SemVer

/// A numeric identifier of any length: a `u64` when it fits (no allocation on the hot path),
/// otherwise its digits without leading zeros, which are then larger than any `u64`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Num {
    Small(u64),
    Big(String),
}

impl Num {
    const ZERO: Num = Num::Small(0);

    fn parse(s: &str) -> Option<Num> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(match s.parse::<u64>() {
            Ok(n) => Num::Small(n),
            Err(_) => Num::Big(s.trim_start_matches('0').to_owned()),
        })
    }
}

impl Ord for Num {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Num::Small(a), Num::Small(b)) => a.cmp(b),
            (Num::Small(_), Num::Big(_)) => Ordering::Less,
            (Num::Big(_), Num::Small(_)) => Ordering::Greater,
            (Num::Big(a), Num::Big(b)) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
        }
    }
}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Ident {
    Num(Num),
    Alpha(String),
}

impl Ord for Ident {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Ident::Num(a), Ident::Num(b)) => a.cmp(b),
            (Ident::Num(_), Ident::Alpha(_)) => Ordering::Less,
            (Ident::Alpha(_), Ident::Num(_)) => Ordering::Greater,
            (Ident::Alpha(a), Ident::Alpha(b)) => a.as_bytes().cmp(b.as_bytes()),
        }
    }
}

impl PartialOrd for Ident {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A SemVer 2.0 version; build metadata is dropped because it has no precedence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SemVer {
    core: [Num; 3],
    pre: Vec<Ident>,
}

impl SemVer {
    /// Parses `MAJOR.MINOR.PATCH[-PRE][+BUILD]`, accepting a leading `v` or `=` as npm
    /// lockfiles and advisories sometimes carry.
    pub fn parse(text: &str) -> Option<SemVer> {
        let t = text.trim_start_matches(['v', '=']).trim();
        let t = t.split_once('+').map_or(t, |(v, _)| v);
        let (core, pre) = match t.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (t, None),
        };
        let mut parts = core.split('.');
        let major = Num::parse(parts.next()?)?;
        let minor = Num::parse(parts.next()?)?;
        let patch = Num::parse(parts.next()?)?;
        if parts.next().is_some() {
            return None;
        }
        let pre = match pre {
            None => Vec::new(),
            Some(p) => p
                .split('.')
                .map(|id| {
                    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    {
                        return None;
                    }
                    Some(match Num::parse(id) {
                        Some(n) => Ident::Num(n),
                        None => Ident::Alpha(id.to_owned()),
                    })
                })
                .collect::<Option<Vec<_>>>()?,
        };
        Some(SemVer {
            core: [major, minor, patch],
            pre,
        })
    }

    /// Parses a Go module version: `v1.2.3`, pseudo-versions, `+incompatible`, and the
    /// toolchain spellings `go1.21.3`, `go1.21` and `go1.21rc2` (→ `1.21.0-rc.2`).
    pub fn parse_go(text: &str) -> Option<SemVer> {
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("go") {
            // Toolchain versions: `1.21`, `1.21.3`, `1.21rc2`, `1.21beta1`.
            let split = rest
                .find(|c: char| c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let (num, pre) = rest.split_at(split);
            let mut parts: Vec<&str> = num.split('.').collect();
            while parts.len() < 3 {
                parts.push("0");
            }
            let mut v = parts.join(".");
            if !pre.is_empty() {
                let digits = pre.find(|c: char| c.is_ascii_digit()).unwrap_or(pre.len());
                let (word, n) = pre.split_at(digits);
                v.push('-');
                v.push_str(word);
                if !n.is_empty() {
                    v.push('.');
                    v.push_str(n);
                }
            }
            return SemVer::parse(&v);
        }
        SemVer::parse(t)
    }

    /// Whether this is a pre-release.
    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

impl Ord for SemVer {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core.cmp(&other.core).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A pre-release sorts before its release.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            }
        })
    }
}

impl PartialOrd for SemVer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// ---------------------------------------------------------------------------------------------
// Debian (dpkg)

/// A dpkg version `[epoch:]upstream[-revision]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebVersion {
    epoch: u64,
    upstream: String,
    revision: String,
}

impl DebVersion {
    /// Parses a dpkg version.
    pub fn parse(text: &str) -> Option<DebVersion> {
        let t = text.trim();
        let (epoch, rest) = match t.split_once(':') {
            Some((e, r)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
                (e.parse().ok()?, r)
            }
            Some(_) => return None,
            None => (0, t),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        if upstream.is_empty() || !upstream.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        Some(DebVersion {
            epoch,
            upstream: upstream.to_owned(),
            revision: revision.to_owned(),
        })
    }
}

/// dpkg's character order: `~` first (even before the end), then the end, letters, others.
fn deb_order(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternating non-digit and digit runs.
fn deb_compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        loop {
            let ca = a.get(i).copied().filter(|c| !c.is_ascii_digit());
            let cb = b.get(j).copied().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            let (oa, ob) = (deb_order(ca), deb_order(cb));
            if oa != ob {
                return oa.cmp(&ob);
            }
            i += usize::from(ca.is_some());
            j += usize::from(cb.is_some());
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let si = i;
        let sj = j;
        while a.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        let (da, db) = (&a[si..i], &b[sj..j]);
        let ord = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

impl Ord for DebVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| deb_compare(&self.upstream, &other.upstream))
            .then_with(|| deb_compare(&self.revision, &other.revision))
    }
}

impl PartialOrd for DebVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// ---------------------------------------------------------------------------------------------
// Alpine (apk)

/// An apk version `digits(.digits)*[letter](_suffix[N])*[-rN]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApkVersion {
    numbers: Vec<String>,
    letter: Option<u8>,
    suffixes: Vec<(i8, Num)>,
    revision: Num,
}

/// Suffix ranks: pre-release suffixes sort below "no suffix" (0), post-release ones above.
fn apk_suffix_rank(s: &str) -> Option<i8> {
    Some(match s {
        "alpha" => -4,
        "beta" => -3,
        "pre" => -2,
        "rc" => -1,
        "cvs" => 1,
        "svn" => 2,
        "git" => 3,
        "hg" => 4,
        "p" => 5,
        _ => return None,
    })
}

impl ApkVersion {
    /// Parses an apk version.
    pub fn parse(text: &str) -> Option<ApkVersion> {
        let t = text.trim();
        let (body, revision) = match t.rsplit_once("-r") {
            Some((b, r)) => (b, Num::parse(r)?),
            None => (t, Num::ZERO),
        };
        let (head, suffix_text) = match body.split_once('_') {
            Some((h, s)) => (h, Some(s)),
            None => (body, None),
        };
        let (nums, letter) = match head.as_bytes().last() {
            Some(c) if c.is_ascii_lowercase() => (&head[..head.len() - 1], Some(*c)),
            _ => (head, None),
        };
        let numbers: Vec<String> = nums
            .split('.')
            .map(|n| (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then(|| n.to_owned()))
            .collect::<Option<_>>()?;
        let mut suffixes = Vec::new();
        if let Some(s) = suffix_text {
            for part in s.split('_') {
                let digits = part
                    .find(|c: char| c.is_ascii_digit())
                    .unwrap_or(part.len());
                let (word, n) = part.split_at(digits);
                let n = if n.is_empty() {
                    Num::ZERO
                } else {
                    Num::parse(n)?
                };
                suffixes.push((apk_suffix_rank(word)?, n));
            }
        }
        Some(ApkVersion {
            numbers,
            letter,
            suffixes,
            revision,
        })
    }
}

fn apk_number_cmp(first: bool, a: &str, b: &str) -> Ordering {
    // apk compares components after the first one as decimal fractions when either starts
    // with a zero ("1.02" < "1.1"), otherwise as integers.
    if !first && (a.starts_with('0') || b.starts_with('0')) {
        return a.cmp(b);
    }
    match (Num::parse(a), Num::parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

impl Ord for ApkVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        for (i, (a, b)) in self.numbers.iter().zip(&other.numbers).enumerate() {
            let o = apk_number_cmp(i == 0, a, b);
            if o != Ordering::Equal {
                return o;
            }
        }
        self.numbers
            .len()
            .cmp(&other.numbers.len())
            .then_with(|| self.letter.cmp(&other.letter))
            .then_with(|| {
                let n = self.suffixes.len().max(other.suffixes.len());
                let none = (0i8, Num::ZERO);
                for k in 0..n {
                    let a = self.suffixes.get(k).unwrap_or(&none);
                    let b = other.suffixes.get(k).unwrap_or(&none);
                    let o = a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1));
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                Ordering::Equal
            })
            .then_with(|| self.revision.cmp(&other.revision))
    }
}

impl PartialOrd for ApkVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// ---------------------------------------------------------------------------------------------
// RubyGems

#[derive(Clone, Debug, PartialEq, Eq)]
enum GemSeg {
    Num(Num),
    Str(String),
}

/// A `Gem::Version`: segments split on `.` and letter/digit boundaries; a letter makes a
/// pre-release; trailing zero segments do not count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GemVersion {
    segments: Vec<GemSeg>,
}

impl GemVersion {
    /// Parses a RubyGems version (a platform suffix such as `-x86_64-linux` is cut off).
    pub fn parse(text: &str) -> Option<GemVersion> {
        let t = text.trim();
        let t = t.split_once('-').map_or(t, |(v, _)| v);
        if t.is_empty() || !t.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let mut segments = Vec::new();
        for part in t.split('.') {
            let mut cur = String::new();
            let mut cur_digit = None;
            for c in part.chars() {
                if !c.is_ascii_alphanumeric() {
                    return None;
                }
                let d = c.is_ascii_digit();
                if cur_digit.is_some_and(|cd| cd != d) {
                    segments.push(gem_seg(&cur));
                    cur.clear();
                }
                cur_digit = Some(d);
                cur.push(c);
            }
            if cur.is_empty() {
                return None;
            }
            segments.push(gem_seg(&cur));
        }
        // Gem::Version#canonical_segments: drop zero segments before the first letter and at
        // the end, so `1.0 == 1.0.0` and `1.0.a == 1.a`.
        let first_str = segments
            .iter()
            .position(|s| matches!(s, GemSeg::Str(_)))
            .unwrap_or(segments.len());
        let (release, pre) = segments.split_at(first_str);
        let mut release = release.to_vec();
        while release.len() > 1 && release.last() == Some(&GemSeg::Num(Num::ZERO)) {
            release.pop();
        }
        let mut pre = pre.to_vec();
        while pre.last() == Some(&GemSeg::Num(Num::ZERO)) {
            pre.pop();
        }
        release.extend(pre);
        Some(GemVersion { segments: release })
    }
}

fn gem_seg(s: &str) -> GemSeg {
    match Num::parse(s) {
        Some(n) => GemSeg::Num(n),
        None => GemSeg::Str(s.to_owned()),
    }
}

impl Ord for GemVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let zero = GemSeg::Num(Num::ZERO);
        let n = self.segments.len().max(other.segments.len());
        for k in 0..n {
            let a = self.segments.get(k).unwrap_or(&zero);
            let b = other.segments.get(k).unwrap_or(&zero);
            let o = match (a, b) {
                (GemSeg::Num(x), GemSeg::Num(y)) => x.cmp(y),
                (GemSeg::Str(x), GemSeg::Str(y)) => x.cmp(y),
                // A letter segment (pre-release) sorts below any number.
                (GemSeg::Num(_), GemSeg::Str(_)) => Ordering::Greater,
                (GemSeg::Str(_), GemSeg::Num(_)) => Ordering::Less,
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for GemVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_order(scheme: Scheme, ascending: &[&str]) {
        for w in ascending.windows(2) {
            assert_eq!(
                scheme.compare(w[0], w[1]),
                Some(Ordering::Less),
                "{scheme:?}: expected {} < {}",
                w[0],
                w[1]
            );
            assert_eq!(scheme.compare(w[1], w[0]), Some(Ordering::Greater));
        }
    }

    fn assert_eq_v(scheme: Scheme, a: &str, b: &str) {
        assert_eq!(scheme.compare(a, b), Some(Ordering::Equal), "{a} == {b}");
    }

    #[test]
    fn semver_precedence() {
        assert_order(
            Scheme::SemVer,
            &[
                "0.0.0-0",
                "0.0.0",
                "1.0.0-alpha",
                "1.0.0-alpha.1",
                "1.0.0-alpha.beta",
                "1.0.0-beta",
                "1.0.0-beta.2",
                "1.0.0-beta.11",
                "1.0.0-rc.1",
                "1.0.0",
                "1.0.1",
                "1.2.3-rc.1",
                "1.2.3",
                "1.10.0",
                "18446744073709551616.0.0",
            ],
        );
        assert_eq_v(Scheme::SemVer, "v1.2.3", "1.2.3");
        assert_eq_v(Scheme::SemVer, "=1.2.3", "1.2.3+build.5");
        assert_eq!(Scheme::SemVer.parse("1.2"), None);
        assert_eq!(Scheme::SemVer.parse("latest"), None);
    }

    #[test]
    fn go_versions() {
        assert_order(
            Scheme::Go,
            &[
                "v0.0.0-20170915032832-14c0d48ead0c",
                "v1.0.3",
                "1.0.4-0.20180125103619-43913f2f4fbd",
                "v1.0.4",
                // A pseudo-version made after a pre-release tag sorts after that tag.
                "v1.1.0-pre",
                "v1.1.0-pre.0.20190101000000-abcdefabcdef",
                "v1.1.0",
            ],
        );
        assert_eq_v(Scheme::Go, "v2.0.0+incompatible", "2.0.0");
        assert_eq_v(Scheme::Go, "go1.21.3", "1.21.3");
        assert_eq_v(Scheme::Go, "go1.21rc2", "1.21.0-rc.2");
        assert_eq_v(Scheme::Go, "go1.22", "1.22.0");
        assert_order(Scheme::Go, &["go1.21rc2", "1.21.0", "go1.21.1"]);
    }

    #[test]
    fn pep440() {
        assert_order(
            Scheme::Pep440,
            &[
                "1.0.dev0",
                "1.0a1.dev1",
                "1.0a1",
                "1.0b2",
                "1.0rc1",
                "1.0",
                "1.0+local.1",
                "1.0.post1",
                "1.1",
                "2.0",
                "1!0.5",
            ],
        );
        assert_eq_v(Scheme::Pep440, "2.0", "2.0.0");
        assert_eq_v(Scheme::Pep440, "1.0-1", "1.0.post1");
        assert_eq_v(Scheme::Pep440, "1.0RC1", "1.0rc1");
        assert_eq_v(Scheme::Pep440, "v1.0", "1.0");
        assert_eq_v(Scheme::Pep440, "1.0alpha1", "1.0a1");
    }

    #[test]
    fn debian() {
        assert_order(Scheme::Debian, &["1.0~rc1", "1.0", "1.0+deb10u1"]);
        assert_order(Scheme::Debian, &["2.0", "1:0.9"]);
        assert_order(Scheme::Debian, &["1.0-1", "1.0-1ubuntu0.1"]);
        assert_order(Scheme::Debian, &["2.30-4", "2.30-10"]);
        assert_order(Scheme::Debian, &["1.2.3", "1.2.3a"]);
        assert_order(
            Scheme::Debian,
            &["7.74.0-1.3+deb11u7", "7.74.0-1.3+deb11u14"],
        );
        assert_order(Scheme::Debian, &["1.0.0~~", "1.0.0~beta"]);
        assert_eq_v(Scheme::Debian, "0:1.0", "1.0");
        assert_eq_v(Scheme::Debian, "1.00", "1.0");
    }

    #[test]
    fn alpine() {
        assert_order(
            Scheme::Alpine,
            &[
                "1.2.3_rc1-r0",
                "1.2.3-r0",
                "1.2.3-r1",
                "1.2.3_p1-r0",
                "1.2.4",
            ],
        );
        assert_order(
            Scheme::Alpine,
            &[
                "1.0_alpha",
                "1.0_beta",
                "1.0_pre",
                "1.0_rc",
                "1.0",
                "1.0_cvs",
                "1.0_svn",
            ],
        );
        assert_order(Scheme::Alpine, &["1.0_git", "1.0_hg", "1.0_p1", "1.0_p2"]);
        assert_order(Scheme::Alpine, &["1.2", "1.2a", "1.2b", "1.2.1"]);
        assert_order(Scheme::Alpine, &["1.01", "1.1", "1.2", "1.10"]);
        assert_order(Scheme::Alpine, &["3.0.9-r0", "3.0.10-r0", "3.1.0-r0"]);
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics_and_orders_consistently(
            a in "[0-9a-z.+~:_!-]{0,24}",
            b in "[0-9a-z.+~:_!-]{0,24}",
        ) {
            for scheme in [
                Scheme::SemVer, Scheme::Go, Scheme::Pep440, Scheme::Debian, Scheme::Alpine,
                Scheme::RubyGems, Scheme::Unknown,
            ] {
                if let Some(o) = scheme.compare(&a, &b) {
                    proptest::prop_assert_eq!(scheme.compare(&b, &a), Some(o.reverse()));
                    proptest::prop_assert_eq!(scheme.compare(&a, &a), Some(Ordering::Equal));
                }
            }
        }
    }

    #[test]
    fn rubygems() {
        assert_order(
            Scheme::RubyGems,
            &["1.0.a", "1.0.b1", "1.0.rc1", "1.0", "1.0.1", "1.1", "1.10"],
        );
        assert_eq_v(Scheme::RubyGems, "1.0", "1.0.0");
        assert_eq_v(Scheme::RubyGems, "1.13.10-x86_64-linux", "1.13.10");
    }
}
