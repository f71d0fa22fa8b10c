//! Suppressions: the ignore file (`.pipe/scan-ignore.yaml`), OpenVEX documents and the
//! baseline report.
//!
//! Ignore rules must give a reason and may expire; an expired rule no longer suppresses, and
//! expired and unused rules are reported (errors with `--strict-ignores`), so suppressions
//! cannot rot silently.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::inventory::Package;
use super::time;

/// The ignore file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IgnoreFile {
    version: u32,
    #[serde(default)]
    ignore: Vec<serde_saphyr::Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Option<String>,
    /// A secret rule id.
    rule: Option<String>,
    /// A misconfiguration check id.
    check: Option<String>,
    #[serde(default)]
    packages: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    reason: Option<String>,
    expires: Option<String>,
}

/// One ignore rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// 1-based line in the ignore file.
    pub line: u32,
    /// Advisory id or alias.
    pub id: String,
    /// Package selectors: purl prefixes (`pkg:cargo/rsa`), `name` or `name@version`.
    pub packages: Vec<String>,
    /// Path globs on the lockfile.
    paths: globset::GlobSet,
    /// The globs as written.
    pub path_globs: Vec<String>,
    /// Why.
    pub reason: String,
    /// Expiry date as written.
    pub expires: Option<String>,
    /// Day number of the expiry (the rule stops applying after that day).
    expires_day: Option<i64>,
}

/// A loaded ignore file.
#[derive(Clone, Debug)]
pub struct Ignores {
    /// Path as shown.
    pub path: String,
    /// `sha256:` of the file.
    pub digest: String,
    /// Rules in file order.
    pub rules: Vec<Rule>,
}

/// A problem in a policy input (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}: {message}")]
pub struct PolicyError {
    /// The file.
    pub path: String,
    /// 1-based line (0 when unknown).
    pub line: u32,
    /// What.
    pub message: String,
}

impl PolicyError {
    /// A constructor of errors in one file.
    fn in_file(shown: &str) -> impl Fn(u32, String) -> PolicyError + '_ {
        move |line, message| PolicyError {
            path: shown.to_owned(),
            line,
            message,
        }
    }
}

/// Reads a JSON policy input (VEX document, baseline report).
fn read_json(path: &Path, shown: &str) -> Result<(Vec<u8>, serde_json::Value), PolicyError> {
    let err = PolicyError::in_file(shown);
    let bytes = std::fs::read(path).map_err(|e| err(0, super::io_reason(&e)))?;
    let v = serde_json::from_slice(&bytes)
        .map_err(|e| err(e.line() as u32, format!("not JSON: {e}")))?;
    Ok((bytes, v))
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Ignores {
    /// Loads an ignore file.
    pub fn load(path: &Path, shown: &str) -> Result<Ignores, PolicyError> {
        let err = PolicyError::in_file(shown);
        let bytes = std::fs::read(path).map_err(|e| err(0, super::io_reason(&e)))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| err(0, "not valid UTF-8".into()))?;
        let file: IgnoreFile = serde_saphyr::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line() as u32).unwrap_or(0);
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("invalid YAML").to_owned();
            err(line, first)
        })?;
        if file.version != 1 {
            return Err(err(
                1,
                format!("`version: {}` is not supported (use 1)", file.version),
            ));
        }
        let mut rules = Vec::new();
        for spanned in file.ignore {
            let line = spanned.referenced.line() as u32;
            let r = spanned.value;
            let given: Vec<String> = [r.id, r.rule, r.check]
                .into_iter()
                .flatten()
                .filter(|s| !s.trim().is_empty())
                .collect();
            if given.len() > 1 {
                return Err(err(
                    line,
                    "give one of `id`, `rule` and `check` per rule".into(),
                ));
            }
            let id = given
                .into_iter()
                .next()
                .ok_or_else(|| err(line, "the rule has no `id` (or `rule`, `check`)".into()))?;
            let reason = r
                .reason
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| err(line, format!("the rule for `{id}` needs a `reason`")))?;
            let expires_day = match &r.expires {
                Some(e) => Some(time::parse_date(e).ok_or_else(|| {
                    err(line, format!("`expires: {e}` is not a date (YYYY-MM-DD)"))
                })?),
                None => None,
            };
            let mut b = globset::GlobSetBuilder::new();
            for g in &r.paths {
                b.add(
                    globset::Glob::new(g)
                        .map_err(|e| err(line, format!("invalid glob `{g}`: {}", e.kind())))?,
                );
            }
            let paths = b.build().map_err(|e| err(line, e.to_string()))?;
            rules.push(Rule {
                line,
                id: id.trim().to_owned(),
                packages: r.packages,
                paths,
                path_globs: r.paths,
                reason: reason.trim().to_owned(),
                expires: r.expires,
                expires_day,
            });
        }
        Ok(Ignores {
            path: shown.to_owned(),
            digest: digest(&bytes),
            rules,
        })
    }

    /// The first live rule that suppresses a finding (`ids` = id and aliases).
    pub fn find(
        &self,
        ids: &[&str],
        pkg: Option<&Package>,
        path: &str,
        today: i64,
    ) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| !r.expired(today) && r.matches(ids, pkg, path))
    }
}

impl Rule {
    /// Whether the rule has expired.
    pub fn expired(&self, today: i64) -> bool {
        self.expires_day.is_some_and(|d| today > d)
    }

    /// Whether the rule covers a finding (a package finding, or a secret or
    /// misconfiguration at `path`).
    pub fn matches(&self, ids: &[&str], pkg: Option<&Package>, path: &str) -> bool {
        ids.contains(&self.id.as_str())
            && (self.packages.is_empty()
                || pkg.is_some_and(|p| self.packages.iter().any(|s| package_matches(s, p))))
            && (self.path_globs.is_empty() || self.paths.is_match(path))
    }
}

fn package_matches(sel: &str, pkg: &Package) -> bool {
    if sel.starts_with("pkg:") {
        // A purl with version (that version), without (any version), or a namespace
        // ending in `/`; qualifiers are ignored on both sides.
        let strip = |p: &str| p.split(['?', '#']).next().unwrap_or(p).to_owned();
        let base = strip(&pkg.purl);
        let unversioned = base.rsplit_once('@').map_or(base.as_str(), |(b, _)| b);
        let sel = strip(sel);
        return sel == base || sel == unversioned || (sel.ends_with('/') && base.starts_with(&sel));
    }
    match sel.rsplit_once('@').filter(|(n, _)| !n.is_empty()) {
        Some((n, v)) => n == pkg.name && v == pkg.version,
        None => sel == pkg.name,
    }
}

// ---------------------------------------------------------------------------------------------
// OpenVEX

/// A loaded OpenVEX document.
#[derive(Clone, Debug)]
pub struct Vex {
    /// Path as shown.
    pub path: String,
    /// `sha256:` of the file.
    pub digest: String,
    statements: Vec<VexStatement>,
}

#[derive(Clone, Debug)]
struct VexStatement {
    ids: Vec<String>,
    products: Vec<String>,
    status: String,
    justification: String,
}

/// What a VEX statement says about a finding.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct VexVerdict {
    /// The document.
    pub path: String,
    /// `not_affected` or `fixed`.
    pub status: String,
    /// The justification or impact statement.
    pub justification: String,
}

impl Vex {
    /// Loads an OpenVEX JSON document.
    pub fn load(path: &Path, shown: &str) -> Result<Vex, PolicyError> {
        let err = PolicyError::in_file(shown);
        let (bytes, v) = read_json(path, shown)?;
        if !v
            .get("@context")
            .and_then(|c| c.as_str())
            .is_some_and(|c| c.contains("openvex"))
        {
            return Err(err(
                1,
                "not an OpenVEX document (no openvex `@context`)".into(),
            ));
        }
        let mut statements = Vec::new();
        for s in v
            .get("statements")
            .and_then(|s| s.as_array())
            .into_iter()
            .flatten()
        {
            let vuln = s.get("vulnerability");
            let mut ids: Vec<String> = Vec::new();
            if let Some(name) = vuln
                .and_then(|v| v.get("name").or(v.get("@id")))
                .and_then(|n| n.as_str())
            {
                ids.push(name.to_owned());
            } else if let Some(name) = vuln.and_then(|v| v.as_str()) {
                ids.push(name.to_owned());
            }
            if let Some(a) = vuln
                .and_then(|v| v.get("aliases"))
                .and_then(|a| a.as_array())
            {
                ids.extend(a.iter().filter_map(|x| x.as_str().map(str::to_owned)));
            }
            let mut products = Vec::new();
            for p in s
                .get("products")
                .and_then(|p| p.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(id) = p.get("@id").and_then(|x| x.as_str()).or(p.as_str()) {
                    products.push(id.to_owned());
                }
                if let Some(purl) = p
                    .get("identifiers")
                    .and_then(|i| i.get("purl"))
                    .and_then(|x| x.as_str())
                {
                    products.push(purl.to_owned());
                }
                for sc in p
                    .get("subcomponents")
                    .and_then(|x| x.as_array())
                    .into_iter()
                    .flatten()
                {
                    if let Some(id) = sc.get("@id").and_then(|x| x.as_str()) {
                        products.push(id.to_owned());
                    }
                }
            }
            let status = s
                .get("status")
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_owned();
            let justification = s
                .get("justification")
                .or(s.get("impact_statement"))
                .or(s.get("status_notes"))
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_owned();
            statements.push(VexStatement {
                ids,
                products,
                status,
                justification,
            });
        }
        Ok(Vex {
            path: shown.to_owned(),
            digest: digest(&bytes),
            statements,
        })
    }

    /// The statement that suppresses a finding: status `not_affected` or `fixed` for one of
    /// its ids and a product whose purl is the package's (versionless purls cover all
    /// versions; qualifiers are ignored).
    pub fn find(&self, ids: &[&str], pkg: &Package) -> Option<VexVerdict> {
        let strip = |p: &str| p.split(['?', '#']).next().unwrap_or(p).to_owned();
        let pkg_purl = strip(&pkg.purl);
        let pkg_base = pkg_purl
            .rsplit_once('@')
            .map_or(pkg_purl.clone(), |(b, _)| b.to_owned());
        self.statements
            .iter()
            .filter(|s| s.status == "not_affected" || s.status == "fixed")
            .find(|s| {
                s.ids.iter().any(|i| ids.contains(&i.as_str()))
                    && s.products.iter().any(|p| {
                        let p = strip(p);
                        p == pkg_purl || p == pkg_base
                    })
            })
            .map(|s| VexVerdict {
                path: self.path.clone(),
                status: s.status.clone(),
                justification: s.justification.clone(),
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Baseline

/// Findings of an earlier report: (id, ecosystem, name, source file). The version is left
/// out on purpose: a package upgraded but still affected by the same advisory is not a new
/// problem.
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    /// Path as shown.
    pub path: String,
    keys: std::collections::HashSet<(String, String, String, String)>,
    /// Fingerprints of secrets and misconfigurations (no package to key them by).
    fingerprints: std::collections::HashSet<String>,
    /// Findings in the baseline.
    pub findings: usize,
}

impl Baseline {
    /// Loads a `pipe.scan/v1` report.
    pub fn load(path: &Path, shown: &str) -> Result<Baseline, PolicyError> {
        let err = PolicyError::in_file(shown);
        let (_, v) = read_json(path, shown)?;
        if v.get("schema").and_then(|s| s.as_str()) != Some(super::report::SCHEMA) {
            return Err(err(1, format!("not a `{}` report", super::report::SCHEMA)));
        }
        let mut keys = std::collections::HashSet::new();
        let mut fingerprints = std::collections::HashSet::new();
        let findings = v
            .get("findings")
            .and_then(|f| f.as_array())
            .cloned()
            .unwrap_or_default();
        for f in &findings {
            let s = |p: &[&str]| -> String {
                let mut cur = f;
                for k in p {
                    match cur.get(k) {
                        Some(x) => cur = x,
                        None => return String::new(),
                    }
                }
                cur.as_str().unwrap_or("").to_owned()
            };
            let key_of = |id: String| {
                (
                    id,
                    s(&["package", "ecosystem"]),
                    s(&["package", "name"]),
                    s(&["location", "path"]),
                )
            };
            if f.get("package").is_none() {
                fingerprints.insert(s(&["fingerprint"]));
                continue;
            }
            keys.insert(key_of(s(&["id"])));
            // Aliases count too: the database may have renamed the primary id.
            for a in f
                .get("aliases")
                .and_then(|a| a.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(a) = a.as_str() {
                    keys.insert(key_of(a.to_owned()));
                }
            }
        }
        Ok(Baseline {
            path: shown.to_owned(),
            keys,
            fingerprints,
            findings: findings.len(),
        })
    }

    /// Whether a secret or misconfiguration was already in the baseline.
    pub fn contains_fingerprint(&self, fingerprint: &str) -> bool {
        self.fingerprints.contains(fingerprint)
    }

    /// Whether a finding was already in the baseline.
    pub fn contains(&self, ids: &[&str], pkg: &Package) -> bool {
        ids.iter().any(|id| {
            self.keys.contains(&(
                (*id).to_owned(),
                pkg.ecosystem.clone(),
                pkg.name.clone(),
                pkg.source_file.clone(),
            ))
        })
    }
}

/// Resolves a possibly relative policy path against a base directory.
pub fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
