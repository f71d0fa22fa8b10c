//! Secret detection with gitleaks-format rules (scan.md §5).
//!
//! A rule has an `id`, a `regex` (RE2 syntax, which the `regex` crate reads), `keywords`
//! (a case-insensitive prefilter: the rule runs only near one of them), an optional
//! `secretGroup`, a minimum Shannon `entropy`, an optional `path` regex and `allowlists`
//! (`regexes` on the secret, the match or the line, `paths`, `stopwords`; `condition` OR/AND).
//! Global `[[allowlists]]` apply to every rule (or to `targetRules`).
//!
//! How a file is scanned: one Aho-Corasick pass finds every keyword of every rule; each hit
//! runs that rule's regex on the hit's line only (a 32 KiB window for multi-line rules such as
//! private keys), once per line. Regexes are compiled the first time a keyword of theirs is
//! seen, so a scan that meets no `stripe` keyword never compiles the Stripe rule.
//!
//! Secrets never leave this module in clear: findings carry a redacted match and a
//! fingerprint (`sha256` of rule, path and secret), so reports, logs and SARIF are safe to
//! publish.

pub mod history;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::Warning;
use super::osv::Kind;
use super::report::Detection;
use super::severity::Severity;

/// The built-in rules, in the gitleaks format.
pub const BUILTIN_RULES: &str = include_str!("rules.toml");

/// The digest of the built-in rules (what [`Rules::digest`] is for them).
pub fn builtin_digest() -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(BUILTIN_RULES.as_bytes()))
    )
}

/// Bytes after a keyword hit that a multi-line rule may read.
const MULTILINE_WINDOW: usize = 32 * 1024;

/// A file whose first bytes hold a NUL is binary and not scanned.
const BINARY_PROBE: usize = 8000;

/// A problem in a rule file (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// The rule file as shown.
    pub path: String,
    /// What.
    pub message: String,
}

#[derive(Debug, Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    extend: Option<RawExtend>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    allowlist: Option<RawAllowlist>,
    #[serde(default)]
    allowlists: Vec<RawAllowlist>,
}

#[derive(Debug, Deserialize, Default)]
struct RawExtend {
    #[serde(default, rename = "useDefault")]
    use_default: bool,
    #[serde(default, rename = "disabledRules")]
    disabled_rules: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawRule {
    id: String,
    #[serde(default)]
    description: String,
    regex: Option<String>,
    #[serde(default, rename = "secretGroup")]
    secret_group: Option<usize>,
    entropy: Option<f64>,
    #[serde(default)]
    keywords: Vec<String>,
    path: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    allowlist: Option<RawAllowlist>,
    #[serde(default)]
    allowlists: Vec<RawAllowlist>,
}

#[derive(Debug, Deserialize, Default)]
struct RawAllowlist {
    #[serde(default)]
    condition: Option<String>,
    #[serde(default, rename = "regexTarget")]
    regex_target: Option<String>,
    #[serde(default)]
    regexes: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    #[serde(default, rename = "targetRules")]
    target_rules: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Secret,
    Match,
    Line,
}

#[derive(Debug)]
struct Allowlist {
    and: bool,
    target: Target,
    regexes: Vec<Regex>,
    paths: Vec<regex::Regex>,
    stopwords: Vec<String>,
    target_rules: Vec<String>,
}

impl Allowlist {
    /// Whether the allowlist suppresses a candidate.
    fn allows(&self, path: &str, secret: &[u8], m: &[u8], line: &[u8]) -> bool {
        let mut checks: Vec<bool> = Vec::with_capacity(3);
        if !self.paths.is_empty() {
            checks.push(self.paths.iter().any(|p| p.is_match(path)));
        }
        if !self.regexes.is_empty() {
            let t = match self.target {
                Target::Secret => secret,
                Target::Match => m,
                Target::Line => line,
            };
            checks.push(self.regexes.iter().any(|r| r.is_match(t)));
        }
        if !self.stopwords.is_empty() {
            let lower = secret.to_ascii_lowercase();
            checks.push(
                self.stopwords
                    .iter()
                    .any(|w| memchr::memmem::find(&lower, w.as_bytes()).is_some()),
            );
        }
        if checks.is_empty() {
            return false;
        }
        if self.and {
            checks.iter().all(|c| *c)
        } else {
            checks.iter().any(|c| *c)
        }
    }

    /// Whether only a path decides (checked once per file).
    fn path_only(&self) -> bool {
        self.regexes.is_empty() && self.stopwords.is_empty() && !self.paths.is_empty()
    }
}

/// One rule.
#[derive(Debug)]
pub struct Rule {
    /// Stable id (reports, ignores).
    pub id: String,
    /// What it finds.
    pub description: String,
    /// Severity of its findings.
    pub severity: Severity,
    regex_src: Option<String>,
    regex: OnceLock<Option<Regex>>,
    secret_group: Option<usize>,
    entropy: Option<f64>,
    keywords: Vec<String>,
    path: Option<regex::Regex>,
    allowlists: Vec<Allowlist>,
    multiline: bool,
    generic: bool,
}

impl Rule {
    fn regex(&self) -> Option<&Regex> {
        self.regex
            .get_or_init(|| self.regex_src.as_deref().and_then(|s| compile(s).ok()))
            .as_ref()
    }
}

/// A set of rules ready to scan.
#[derive(Debug)]
pub struct Rules {
    rules: Vec<Rule>,
    global: Vec<Allowlist>,
    /// The keywords, lowercase, one pattern each.
    patterns: Vec<String>,
    /// Their automaton, built on the first file that needs it (a scan of one lockfile, which
    /// the allowlist skips, never pays for it).
    keywords: OnceLock<Option<AhoCorasick>>,
    /// Rules per keyword pattern.
    by_keyword: Vec<Vec<usize>>,
    /// Rules with a regex and no keyword: run on every line.
    unkeyed: Vec<usize>,
    /// Rules with a path and no regex.
    path_only: Vec<usize>,
    /// The digest of the rule sources (in the report).
    pub digest: String,
}

fn compile_allowlist(
    a: RawAllowlist,
    err: &dyn Fn(String) -> ConfigError,
) -> Result<Allowlist, ConfigError> {
    let target = match a.regex_target.as_deref().unwrap_or("secret") {
        "secret" | "" => Target::Secret,
        "match" => Target::Match,
        "line" => Target::Line,
        other => {
            return Err(err(format!(
                "unknown `regexTarget = \"{other}\"` (secret, match or line)"
            )));
        }
    };
    let and = match a
        .condition
        .as_deref()
        .unwrap_or("OR")
        .to_ascii_uppercase()
        .as_str()
    {
        "OR" | "" => false,
        "AND" => true,
        other => {
            return Err(err(format!(
                "unknown `condition = \"{other}\"` (OR or AND)"
            )));
        }
    };
    let regexes = a
        .regexes
        .iter()
        .map(|r| {
            compile(r).map_err(|e| {
                err(format!(
                    "invalid allowlist regex `{r}`: {}",
                    first_line(&e.to_string())
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let paths = a
        .paths
        .iter()
        .map(|r| {
            regex::Regex::new(r).map_err(|e| {
                err(format!(
                    "invalid allowlist path `{r}`: {}",
                    first_line(&e.to_string())
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Allowlist {
        and,
        target,
        regexes,
        paths,
        stopwords: a.stopwords.iter().map(|s| s.to_ascii_lowercase()).collect(),
        target_rules: a.target_rules,
    })
}

/// The keyword automaton: ASCII case-insensitive, every occurrence (overlapping), as a DFA:
/// the search over every byte of every file is the hot loop, and the DFA is several times
/// faster at it than the NFA.
fn build_keywords(patterns: &[String]) -> Result<AhoCorasick, aho_corasick::BuildError> {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(patterns)
}

/// Rule regexes match bytes with ASCII classes (`\w` is `[0-9A-Za-z_]`), as secrets are
/// ASCII; this keeps counted repetitions small and fast.
fn compile(src: &str) -> Result<Regex, regex::Error> {
    regex::bytes::RegexBuilder::new(src)
        .unicode(false)
        .size_limit(32 * 1024 * 1024)
        .build()
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or_else(|| s.lines().next().unwrap_or(s))
        .to_lowercase()
}

impl Rules {
    /// The built-in rules (parsed once per process).
    pub fn builtin() -> Result<&'static Rules, String> {
        static RULES: OnceLock<Result<Rules, String>> = OnceLock::new();
        RULES
            .get_or_init(|| {
                Rules::parse(BUILTIN_RULES, "built-in rules", None, false)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Reads a gitleaks-format rule file. With `[extend] useDefault = true` its rules and
    /// allowlists are added to the built-in ones (minus `disabledRules`); otherwise they
    /// replace them. Every regex is compiled now, so a bad one is an error naming it.
    pub fn load(path: &Path, shown: &str) -> Result<Rules, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: shown.to_owned(),
            message: super::io_reason(&e),
        })?;
        Rules::parse(&text, shown, Some(BUILTIN_RULES), true)
    }

    fn parse(
        text: &str,
        shown: &str,
        defaults: Option<&str>,
        eager: bool,
    ) -> Result<Rules, ConfigError> {
        let err = |message: String| ConfigError {
            path: shown.to_owned(),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| err(first_line(&e.to_string())))?;
        let mut h = Sha256::new();
        h.update(text.as_bytes());
        let mut rules_raw = Vec::new();
        let mut allow_raw = Vec::new();
        if let (Some(ext), Some(def)) = (&raw.extend, defaults)
            && ext.use_default
        {
            h.update(def.as_bytes());
            let d: RawConfig = toml::from_str(def).map_err(|e| err(first_line(&e.to_string())))?;
            rules_raw.extend(
                d.rules
                    .into_iter()
                    .filter(|r| !ext.disabled_rules.contains(&r.id)),
            );
            allow_raw.extend(d.allowlists);
        }
        // A rule of the file replaces a default rule of the same id.
        for r in raw.rules {
            rules_raw.retain(|x: &RawRule| x.id != r.id);
            rules_raw.push(r);
        }
        allow_raw.extend(raw.allowlist);
        allow_raw.extend(raw.allowlists);
        let global = allow_raw
            .into_iter()
            .map(|a| compile_allowlist(a, &err))
            .collect::<Result<Vec<_>, _>>()?;
        let mut rules = Vec::new();
        let mut seen = BTreeSet::new();
        for r in rules_raw {
            let rerr = |m: String| err(format!("rule `{}`: {m}", r.id));
            if !seen.insert(r.id.clone()) {
                return Err(rerr("defined twice".into()));
            }
            if r.regex.is_none() && r.path.is_none() {
                return Err(rerr("needs a `regex` or a `path`".into()));
            }
            let severity = match &r.severity {
                Some(s) => Severity::parse(s)
                    .ok_or_else(|| rerr(format!("`severity = \"{s}\"` is not a severity")))?,
                None => Severity::High,
            };
            let regex = OnceLock::new();
            if eager && let Some(src) = &r.regex {
                let re = compile(src)
                    .map_err(|e| rerr(format!("invalid regex: {}", first_line(&e.to_string()))))?;
                let _ = regex.set(Some(re));
            }
            let path = match &r.path {
                Some(p) => Some(regex::Regex::new(p).map_err(|e| {
                    rerr(format!(
                        "invalid path regex: {}",
                        first_line(&e.to_string())
                    ))
                })?),
                None => None,
            };
            let mut allowlists = Vec::new();
            for a in r.allowlist.into_iter().chain(r.allowlists) {
                allowlists.push(compile_allowlist(a, &rerr)?);
            }
            let multiline = r.regex.as_deref().is_some_and(|s| {
                s.contains("\\s\\S") || s.contains("(?s") || s.contains("\\n") || s.contains("\\r")
            });
            rules.push(Rule {
                generic: r.id.starts_with("generic"),
                id: r.id,
                description: r.description,
                severity,
                regex_src: r.regex,
                regex,
                secret_group: r.secret_group.filter(|g| *g > 0),
                entropy: r.entropy,
                keywords: r
                    .keywords
                    .iter()
                    .map(|k| k.to_ascii_lowercase())
                    .filter(|k| !k.is_empty())
                    .collect(),
                path,
                allowlists,
                multiline,
            });
        }
        let mut patterns: Vec<String> = Vec::new();
        let mut by_keyword: Vec<Vec<usize>> = Vec::new();
        let mut unkeyed = Vec::new();
        let mut path_only = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            if r.regex_src.is_none() {
                path_only.push(i);
                continue;
            }
            if r.keywords.is_empty() {
                unkeyed.push(i);
            }
            for k in &r.keywords {
                match patterns.iter().position(|p| p == k) {
                    Some(j) => by_keyword[j].push(i),
                    None => {
                        patterns.push(k.clone());
                        by_keyword.push(vec![i]);
                    }
                }
            }
        }
        let keywords = OnceLock::new();
        if eager {
            let _ = keywords.set(Some(
                build_keywords(&patterns)
                    .map_err(|e| err(format!("cannot index keywords: {e}")))?,
            ));
        }
        Ok(Rules {
            rules,
            global,
            patterns,
            keywords,
            by_keyword,
            unkeyed,
            path_only,
            digest: format!("sha256:{}", hex::encode(h.finalize())),
        })
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Compiles every regex (tests; user files are compiled when loaded). Returns the ids
    /// whose regex does not compile.
    pub fn compile_all(&self) -> Vec<String> {
        self.rules
            .iter()
            .filter(|r| r.regex_src.is_some() && r.regex().is_none())
            .map(|r| r.id.clone())
            .collect()
    }

    fn globally_allowed_path(&self, path: &str) -> bool {
        self.global
            .iter()
            .any(|a| a.target_rules.is_empty() && a.path_only() && a.allows(path, b"", b"", b""))
    }

    /// Scans one file's bytes. `path` is the file's path as reported (`/`-separated).
    /// Binary files (a NUL in the first 8000 bytes) give nothing.
    pub fn scan(&self, path: &str, bytes: &[u8]) -> Vec<Hit> {
        if self.globally_allowed_path(path) {
            return Vec::new();
        }
        let mut hits = Vec::new();
        for &i in &self.path_only {
            let r = &self.rules[i];
            if r.path.as_ref().is_some_and(|p| p.is_match(path)) {
                hits.push(Hit {
                    rule: i,
                    start: 0,
                    end: 0,
                    secret: Vec::new(),
                    entropy: 0.0,
                    line: 1,
                    column: 1,
                    context: String::new(),
                });
            }
        }
        if memchr::memchr(0, &bytes[..bytes.len().min(BINARY_PROBE)]).is_some() {
            return hits;
        }
        // Rules whose path regex rules this file out never run.
        let usable = |r: &Rule| r.path.as_ref().is_none_or(|p| p.is_match(path));
        let mut candidates: Vec<Candidate> = Vec::new();
        // Per rule: the end of the last window scanned, so a line is scanned once per rule.
        let mut covered = vec![0usize; self.rules.len()];
        let mut scanned_any = vec![false; self.rules.len()];
        let ac = self
            .keywords
            .get_or_init(|| build_keywords(&self.patterns).ok());
        if let Some(ac) = ac {
            for m in ac.find_overlapping_iter(bytes) {
                let Some(rule_ids) = self.by_keyword.get(m.pattern().as_usize()) else {
                    continue;
                };
                let mut bounds: Option<(usize, usize)> = None;
                for &ri in rule_ids {
                    if scanned_any[ri] && m.start() < covered[ri] {
                        continue;
                    }
                    let r = &self.rules[ri];
                    if !usable(r) {
                        continue;
                    }
                    let (ls, le) = *bounds.get_or_insert_with(|| line_bounds(bytes, m.start()));
                    let start = if scanned_any[ri] {
                        ls.max(covered[ri])
                    } else {
                        ls
                    };
                    let end = if r.multiline {
                        (m.end() + MULTILINE_WINDOW).min(bytes.len()).max(le)
                    } else {
                        le
                    };
                    scanned_any[ri] = true;
                    covered[ri] = end;
                    self.run_rule(ri, path, bytes, start, end, &mut candidates);
                }
            }
        }
        for &ri in &self.unkeyed {
            if usable(&self.rules[ri]) {
                self.run_rule(ri, path, bytes, 0, bytes.len(), &mut candidates);
            }
        }
        if candidates.is_empty() {
            return hits;
        }
        candidates.sort_by_key(|c| (c.start, c.end, c.rule));
        candidates.dedup_by_key(|c| (c.start, c.end, c.rule));
        // A generic rule does not repeat what a specific rule found at the same place.
        let specific: Vec<(usize, usize)> = candidates
            .iter()
            .filter(|c| !self.rules[c.rule].generic)
            .map(|c| (c.start, c.end))
            .collect();
        let lines = super::inventory::Lines::new_bytes(bytes);
        for c in candidates {
            let r = &self.rules[c.rule];
            if r.generic && specific.iter().any(|&(s, e)| s < c.end && c.start < e) {
                continue;
            }
            let secret = &bytes[c.start..c.end];
            let (ls, le) = line_bounds(bytes, c.start);
            let line = lines.line(c.start);
            let column = String::from_utf8_lossy(&bytes[ls..c.start]).chars().count() as u32 + 1;
            hits.push(Hit {
                rule: c.rule,
                start: c.start,
                end: c.end,
                secret: secret.to_vec(),
                entropy: c.entropy,
                line,
                column,
                context: redact_line(
                    &bytes[ls..le.max(ls)],
                    c.start - ls,
                    (c.end - ls).min(le.max(ls) - ls),
                ),
            });
        }
        hits
    }

    fn run_rule(
        &self,
        ri: usize,
        path: &str,
        bytes: &[u8],
        start: usize,
        end: usize,
        out: &mut Vec<Candidate>,
    ) {
        let r = &self.rules[ri];
        let Some(re) = r.regex() else {
            return;
        };
        let hay = &bytes[start..end];
        for caps in re.captures_iter(hay) {
            let Some(whole) = caps.get(0) else {
                continue;
            };
            let group = match r.secret_group {
                Some(g) => caps.get(g),
                None => (1..caps.len()).find_map(|g| caps.get(g)).or(Some(whole)),
            };
            let Some(g) = group else {
                continue;
            };
            let secret = g.as_bytes();
            if secret.is_empty() {
                continue;
            }
            let entropy = shannon(secret);
            if r.entropy.is_some_and(|min| entropy < min) {
                continue;
            }
            if is_trivial(secret) {
                continue;
            }
            let abs_start = start + g.start();
            let (ls, le) = line_bounds(bytes, abs_start);
            let line = &bytes[ls..le.max(ls)];
            let m = whole.as_bytes();
            let allowed = r.allowlists.iter().any(|a| a.allows(path, secret, m, line))
                || self.global.iter().any(|a| {
                    (a.target_rules.is_empty() || a.target_rules.contains(&r.id))
                        && a.allows(path, secret, m, line)
                });
            if allowed {
                continue;
            }
            out.push(Candidate {
                rule: ri,
                start: abs_start,
                end: start + g.end(),
                entropy,
            });
        }
    }

    /// The rule of a hit.
    pub fn rule(&self, hit: &Hit) -> &Rule {
        &self.rules[hit.rule]
    }
}

struct Candidate {
    rule: usize,
    start: usize,
    end: usize,
    entropy: f64,
}

/// A secret found in a file.
#[derive(Clone, Debug)]
pub struct Hit {
    rule: usize,
    /// Byte range of the secret.
    pub start: usize,
    /// End of the secret.
    pub end: usize,
    secret: Vec<u8>,
    /// Shannon entropy of the secret, bits per byte.
    pub entropy: f64,
    /// 1-based line.
    pub line: u32,
    /// 1-based column (characters).
    pub column: u32,
    /// The line with the secret redacted (at most 160 characters).
    pub context: String,
}

impl Hit {
    /// The secret, redacted for display.
    pub fn redacted(&self) -> String {
        redact(&self.secret)
    }

    /// `sha256(rule id, path, secret)`: stable when the secret moves within its file.
    pub fn fingerprint(&self, rule_id: &str, path: &str) -> String {
        let mut h = Sha256::new();
        for part in [rule_id.as_bytes(), path.as_bytes(), &self.secret] {
            h.update(part);
            h.update([0]);
        }
        hex::encode(&h.finalize()[..16])
    }

    /// Number of lines the secret spans (private keys).
    pub fn line_count(&self) -> u32 {
        memchr::memchr_iter(b'\n', &self.secret).count() as u32 + 1
    }
}

/// The start and end (exclusive, without the newline) of the line holding `at`.
fn line_bounds(bytes: &[u8], at: usize) -> (usize, usize) {
    let at = at.min(bytes.len());
    let s = memchr::memrchr(b'\n', &bytes[..at]).map_or(0, |i| i + 1);
    let e = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |i| at + i);
    (s, e)
}

/// Shannon entropy in bits per byte.
pub fn shannon(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in data {
        counts[usize::from(b)] += 1;
    }
    let n = data.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// One character repeated, or a run of one character class that carries no secret.
fn is_trivial(secret: &[u8]) -> bool {
    secret.iter().all(|b| *b == secret[0])
}

/// A secret as shown: at most its first four characters (only when it is long enough that
/// they say little), then `*****`. The length is never shown.
pub fn redact(secret: &[u8]) -> String {
    let s = String::from_utf8_lossy(secret);
    if s.starts_with("-----BEGIN") {
        // The armour line only (the key may sit on one line with escaped newlines).
        let end = s[5..].find("-----").map_or(s.len().min(40), |i| i + 10);
        return format!("{}*****", &s[..end.min(s.len())]);
    }
    let n = s.chars().count();
    let keep = if n >= 20 { 4 } else { 0 };
    let mut out: String = s.chars().take(keep).collect();
    out.push_str("*****");
    out
}

/// The line with `[s, e)` redacted, cut to 160 characters around the secret.
fn redact_line(line: &[u8], s: usize, e: usize) -> String {
    let e = e.max(s).min(line.len());
    let s = s.min(e);
    let before = String::from_utf8_lossy(&line[..s]);
    let after = String::from_utf8_lossy(&line[e..]);
    let before: String = {
        let chars: Vec<char> = before.chars().collect();
        let from = chars.len().saturating_sub(60);
        chars[from..].iter().collect()
    };
    let after: String = after.chars().take(60).collect();
    format!("{}{}{}", before.trim_start(), redact(&line[s..e]), after)
        .trim_end()
        .to_owned()
}

/// What a secret finding shows about itself.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SecretDetail {
    /// The rule's description.
    pub rule: String,
    /// The secret, redacted.
    #[serde(rename = "match")]
    pub redacted: String,
    /// The line, secret redacted.
    pub context: String,
    /// Shannon entropy (bits per byte, two decimals).
    pub entropy: f64,
    /// 1-based column.
    pub column: u32,
    /// The commit, for history scans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

impl SecretDetail {
    /// The detail of a hit.
    pub fn of(rules: &Rules, hit: &Hit) -> SecretDetail {
        SecretDetail {
            rule: rules.rule(hit).description.clone(),
            redacted: hit.redacted(),
            context: hit.context.clone(),
            entropy: (hit.entropy * 100.0).round() / 100.0,
            column: hit.column,
            commit: None,
        }
    }
}

/// The detection of a hit in `path`.
pub fn detection(rules: &Rules, hit: &Hit, path: &str) -> Detection {
    let r = rules.rule(hit);
    Detection {
        kind: Kind::Secret,
        id: r.id.clone(),
        aliases: Vec::new(),
        title: r.description.clone(),
        severity: r.severity,
        path: path.to_owned(),
        start_line: hit.line,
        end_line: hit.line + hit.line_count() - 1,
        fingerprint: hit.fingerprint(&r.id, path),
        secret: Some(SecretDetail::of(rules, hit)),
        check: None,
        layer: None,
    }
}

/// Scans files (relative to `base`) on every core. Files over `max_size` are skipped with
/// a warning; unreadable ones too; binary ones silently.
pub fn scan_files(
    rules: &Rules,
    base: &Path,
    files: &[String],
    max_size: u64,
    warnings: &mut Vec<Warning>,
) -> Vec<Detection> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
        .min(files.len().max(1));
    let work = || {
        let mut dets = Vec::new();
        let mut warns = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(rel) = files.get(i) else {
                break;
            };
            if rules.globally_allowed_path(rel) {
                continue;
            }
            let path = base.join(rel);
            let size = std::fs::symlink_metadata(&path)
                .map(|m| m.len())
                .unwrap_or(0);
            if max_size > 0 && size > max_size {
                warns.push(Warning::at(
                    "file-too-large",
                    rel,
                    None,
                    format!(
                        "not scanned for secrets: {} MiB is over the {} MiB limit (`--max-file-size`)",
                        size / (1024 * 1024),
                        max_size / (1024 * 1024)
                    ),
                ));
                continue;
            }
            match std::fs::read(&path) {
                Ok(bytes) => {
                    for h in rules.scan(rel, &bytes) {
                        dets.push(detection(rules, &h, rel));
                    }
                }
                Err(e) => warns.push(Warning::at(
                    "file-unreadable",
                    rel,
                    None,
                    format!("cannot read: {}", super::io_reason(&e)),
                )),
            }
        }
        (dets, warns)
    };
    let mut out = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(work)).collect();
        for h in handles {
            if let Ok((d, mut w)) = h.join() {
                out.extend(d);
                warnings.append(&mut w);
            }
        }
    });
    out.sort_by(|a, b| {
        (&a.path, a.start_line, &a.id, &a.fingerprint).cmp(&(
            &b.path,
            b.start_line,
            &b.id,
            &b.fingerprint,
        ))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> &'static Rules {
        Rules::builtin().expect("built-in rules parse")
    }

    fn ids(path: &str, text: &str) -> Vec<String> {
        let r = rules();
        let hits = r.scan(path, text.as_bytes());
        hits.iter().map(|h| r.rule(h).id.clone()).collect()
    }

    #[test]
    fn builtin_rules_compile_and_number_over_a_hundred() {
        let r = rules();
        assert!(r.rules().len() >= 100, "{}", r.rules().len());
        assert_eq!(r.digest, builtin_digest());
        assert_eq!(r.compile_all(), Vec::<String>::new());
    }

    #[test]
    fn finds_provider_tokens_and_reports_line_and_column() {
        let text = "x = 1\n  token: ghp_0123456789abcdefghijABCDEFGHIJ012345\n";
        let r = rules();
        let hits = r.scan("a.yml", text.as_bytes());
        assert_eq!(hits.len(), 1);
        assert_eq!(r.rule(&hits[0]).id, "github-pat");
        assert_eq!((hits[0].line, hits[0].column), (2, 10));
        assert_eq!(hits[0].redacted(), "ghp_*****");
        assert!(
            !hits[0].context.contains("0123456789"),
            "{}",
            hits[0].context
        );
    }

    #[test]
    fn private_keys_span_lines() {
        let body = "MIIEowIBAAKCAQEA7v5Vb2QdRbJ3nK0Xw1mZ8d9f0a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0u1v2w3x4y5z6\n";
        let text =
            format!("-----BEGIN RSA PRIVATE KEY-----\n{body}{body}-----END RSA PRIVATE KEY-----\n");
        let r = rules();
        let hits = r.scan("id_rsa", text.as_bytes());
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].line_count(), 4);
        assert_eq!(hits[0].redacted(), "-----BEGIN RSA PRIVATE KEY-----*****");
    }

    #[test]
    fn placeholders_stopwords_low_entropy_and_lockfiles_are_allowed() {
        assert!(ids("a.env", "API_KEY=${API_KEY}\n").is_empty());
        assert!(ids("a.env", "api_key = \"{{ secrets.api_key }}\"\n").is_empty());
        assert!(ids("a.env", "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n").is_empty());
        assert!(ids("a.env", "secret_token = aaaaaaaaaaaaaaaaaaaaaaaa\n").is_empty());
        assert!(
            ids(
                "package-lock.json",
                "\"integrity\": \"sha512-ghp_0123456789abcdefghijABCDEFGHIJ012345\""
            )
            .is_empty()
        );
        assert_eq!(
            ids("a.env", "api_key = 'q8Zt3LmW9xVb2NcR7yHk4PdS'\n"),
            ["generic-api-key"]
        );
        // Identifiers in code are not secrets.
        for code in [
            "let key: ParsedPublicKeyBuffer = x;\n",
            "secret_key = EVP_PKEY_decrypt_init;\n",
            "token: MLKEM768_PUBLIC_KEY_BYTES,\n",
            "{\"id-regCtrl-regToken\", \"id-regCtrl-regToken\", 9},\n",
            "fn new(key: UnboundCipherKey, mode: OperatingMode) {}\n",
        ] {
            assert!(ids("a.rs", code).is_empty(), "{code}");
        }
    }

    #[test]
    fn binary_files_are_skipped() {
        let mut b = b"ghp_0123456789abcdefghijABCDEFGHIJ012345".to_vec();
        b.insert(0, 0);
        assert!(rules().scan("a.bin", &b).is_empty());
    }

    #[test]
    fn user_rule_files_extend_or_replace_and_report_bad_regexes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = tmp.path().join("gitleaks.toml");
        std::fs::write(
            &p,
            "[extend]\nuseDefault = true\n[[rules]]\nid = \"acme\"\nregex = '''acme_[0-9a-f]{16}'''\nkeywords = [\"acme_\"]\n",
        )
        .expect("write");
        let r = Rules::load(&p, "gitleaks.toml").expect("loads");
        assert!(r.rules().len() > 100);
        let hits = r.scan("x", b"k = acme_0123456789abcdef\n");
        assert_eq!(r.rule(&hits[0]).id, "acme");
        std::fs::write(&p, "[[rules]]\nid = \"bad\"\nregex = '''(unclosed'''\n").expect("write");
        let e = Rules::load(&p, "gitleaks.toml").expect_err("bad regex");
        assert!(
            e.to_string()
                .starts_with("gitleaks.toml: rule `bad`: invalid regex"),
            "{e}"
        );
    }

    #[test]
    fn entropy_of_uniform_and_repeated_data() {
        assert_eq!(shannon(b"aaaa"), 0.0);
        assert!((shannon(b"abcd") - 2.0).abs() < 1e-9);
    }
}
