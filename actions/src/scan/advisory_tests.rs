//! Version ordering and range evaluation checked against real advisories from
//! `../shared/advisory-db/osv` (scan.md §7.1): PyPI pre/post/dev releases, npm pre-releases with
//! `last_affected`, Go pseudo-versions and `+incompatible`, and PyPI's name normalization and
//! cross-database merging. Skips without the shared data, fails under `CI=true`.

use std::path::PathBuf;

use super::db;
use super::inventory::{Origin, Package};
use super::matcher::{evaluate, match_all};
use super::osv::Record;
use super::version::Scheme;

fn osv_dir() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/advisory-db/osv");
    if p.is_dir() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "`../shared/advisory-db/osv` is missing beside the repository"
    );
    eprintln!("skipping: no `../shared/advisory-db/osv`");
    None
}

/// Affected versions per advisory file: `(version, affected?)`.
fn check(eco: &str, id: &str, cases: &[(&str, bool)]) {
    let Some(dir) = osv_dir() else { return };
    let text = std::fs::read_to_string(dir.join(eco).join(format!("{id}.json"))).expect("advisory");
    let rec: Record = serde_json::from_str(&text).expect("record");
    let scheme = Scheme::for_ecosystem(eco);
    for (v, want) in cases {
        let hit = rec
            .affected
            .iter()
            .any(|a| evaluate(scheme, v, &a.entry()).is_some());
        assert_eq!(
            hit,
            *want,
            "{id}: {v} should {}be affected",
            if *want { "" } else { "not " }
        );
    }
}

#[test]
fn pypi_post_releases() {
    // fixed 1.6.5.post1
    check(
        "PyPI",
        "PYSEC-2012-1",
        &[
            ("1.6.5", true),
            ("1.6.5.post0", true),
            ("1.6.5.post1", false),
            ("1.6.5-1", false), // the same as .post1
            ("1.6.5.post1.dev0", true),
            ("1.6.6.dev0", false),
        ],
    );
}

#[test]
fn pypi_dev_and_pre_releases() {
    // 0 → 6.0.5 and 7.0.0.dev0 → 7.0.0.dev5
    check(
        "PyPI",
        "PYSEC-2021-837",
        &[
            ("6.0.4", true),
            ("6.0.5", false),
            ("7.0.0.dev0", true),
            ("7.0.0.dev4", true),
            ("7.0.0.dev5", false),
            ("7.0.0a1", false),
            ("7.0.0", false),
        ],
    );
    // …, 1.6 → 1.6.5 and 1.7a0 → 1.7b4
    check(
        "PyPI",
        "PYSEC-2014-19",
        &[
            ("1.6.4", true),
            ("1.6.5", false),
            ("1.7a0", true),
            ("1.7a1", true),
            ("1.7B3", true), // case-insensitive
            ("1.7b4", false),
            ("1.7rc1", false),
            ("1.7", false),
        ],
    );
    // zodb3: 3.9a0 → 3.9.0c2 (`c` is `rc`)
    check(
        "PyPI",
        "PYSEC-2009-10",
        &[
            ("3.9.0b1", true),
            ("3.9.0rc1", true),
            ("3.9.0c2", false),
            ("3.9.0rc2", false),
        ],
    );
}

#[test]
fn pypi_epochs_dominate() {
    let scheme = Scheme::Pep440;
    let entry = super::osv::AffectedEntry {
        ranges: vec![super::osv::Range {
            kind: "ECOSYSTEM".into(),
            events: vec![
                super::osv::Event {
                    introduced: Some("0".into()),
                    ..Default::default()
                },
                super::osv::Event {
                    fixed: Some("2.0".into()),
                    ..Default::default()
                },
            ],
        }],
        versions: vec![],
        kind: super::osv::Kind::Vulnerability,
        severity: None,
        platform: None,
    };
    assert!(evaluate(scheme, "1.9", &entry).is_some());
    assert!(
        evaluate(scheme, "1!1.0", &entry).is_none(),
        "epoch 1 is after every epoch-0 version"
    );
    assert!(evaluate(scheme, "0!1.9", &entry).is_some());
}

#[test]
fn npm_prereleases_and_last_affected() {
    // 2.0.0-alpha8 → last_affected 2.0.0-rc2, 2.0.0 → last_affected 2.13.0
    check(
        "npm",
        "NSWG-ECO-397",
        &[
            ("2.0.0-alpha7", false),
            ("2.0.0-alpha8", true),
            // SemVer compares `alpha10` and `alpha8` as text: alpha10 sorts first.
            ("2.0.0-alpha10", false),
            ("2.0.0-beta1", true),
            ("2.0.0-rc2", true),
            ("2.0.0-rc3", false),
            ("2.0.0", true),
            ("2.13.0", true),
            ("2.13.1", false),
            ("v2.5.0", true),
        ],
    );
    // 0 → last_affected 1.7.0-alpha2
    check(
        "npm",
        "NSWG-ECO-113",
        &[
            ("1.6.0", true),
            ("1.7.0-alpha2", true),
            ("1.7.0-alpha3", false),
            ("1.7.0", false),
        ],
    );
}

#[test]
fn go_pseudo_versions() {
    // 0 → 1.0.4-0.20180125103619-43913f2f4fbd
    check(
        "Go",
        "GO-2020-0006",
        &[
            ("v1.0.3", true),
            ("v1.0.4-0.20180101000000-aaaaaaaaaaaa", true),
            ("v1.0.4-0.20180125103619-43913f2f4fbd", false),
            ("v1.0.4-0.20180201000000-bbbbbbbbbbbb", false),
            ("v1.0.4", false),
        ],
    );
}

#[test]
fn go_incompatible_versions() {
    // 0 → 0.5.2 and 3.0.0+incompatible → 3.0.1-0.20180525145409-4c9aadca8f89+incompatible
    check(
        "Go",
        "GO-2021-0076",
        &[
            ("v0.5.1", true),
            ("v0.5.2", false),
            ("v2.0.0+incompatible", false),
            ("v3.0.0+incompatible", true),
            ("v3.0.1-0.20180101000000-aaaaaaaaaaaa+incompatible", true),
            ("v3.0.1-0.20180525145409-4c9aadca8f89+incompatible", false),
            ("v3.0.1+incompatible", false),
        ],
    );
}

#[test]
fn crates_io_patched_lists_and_prereleases() {
    // 0.6.3 → 0.6.14 and 1.0.0 → 1.6.1
    check(
        "crates.io",
        "RUSTSEC-2021-0003",
        &[
            ("0.6.2", false),
            ("0.6.3", true),
            ("0.6.14-alpha.1", true),
            ("0.6.14", false),
            ("0.9.0", false),
            ("1.0.0-rc.1", false),
            ("1.0.0", true),
            ("1.6.1-beta", true),
            ("1.6.1", false),
            ("1.6.1+build", false),
        ],
    );
}

#[test]
fn pypi_names_normalize_and_databases_merge() {
    let Some(dir) = osv_dir() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    // PYSEC writes `pyyaml`, GHSA `PyYAML`; both describe CVE-2020-14343.
    for id in ["PYSEC-2021-142", "GHSA-8q59-q68h-6hv4"] {
        std::fs::copy(
            dir.join("PyPI").join(format!("{id}.json")),
            src.join(format!("{id}.json")),
        )
        .expect("copy");
    }
    let report = db::import(&[src], &tmp.path().join("db"), 0).expect("import");
    let db = db::Db::open(&report.path).expect("open");
    let pkg = |name: &str, version: &str| Package {
        ecosystem: "PyPI".into(),
        name: name.into(),
        version: version.into(),
        purl: String::new(),
        source_file: "requirements.txt".into(),
        line: 1,
        direct: true,
        dev: false,
        origin: Origin::Registry,
        source_package: None,
        layer: None,
    };
    let pkgs = [
        pkg("PyYAML", "5.3"),
        pkg("py_yaml", "5.3"),
        pkg("pyyaml", "5.4"),
    ];
    let matches = match_all(&db, &pkgs).expect("match");
    assert_eq!(matches.len(), 1, "{matches:#?}");
    let m = &matches[0];
    assert_eq!(m.package, 0);
    assert_eq!(
        m.advisory.id, "PYSEC-2021-142",
        "the ecosystem's own id wins"
    );
    assert_eq!(m.aliases, ["CVE-2020-14343", "GHSA-8q59-q68h-6hv4"]);
    // PYSEC has no severity; GHSA's word fills it in.
    assert_eq!(m.severity.severity, super::severity::Severity::Critical);
    assert_eq!(m.fixed, ["5.4"]);
}

mod differential {
    //! Our SemVer precedence against the `semver` crate's `cmp_precedence`.
    use proptest::prelude::*;

    use super::super::version::Scheme;

    fn ident() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u64..30).prop_map(|n| n.to_string()),
            "[a-z]{1,6}",
            "[a-z]{1,3}[0-9]{1,2}",
        ]
    }

    fn version() -> impl Strategy<Value = String> {
        (
            0u64..4,
            0u64..4,
            0u64..4,
            proptest::collection::vec(ident(), 0..3),
        )
            .prop_map(|(a, b, c, pre)| {
                if pre.is_empty() {
                    format!("{a}.{b}.{c}")
                } else {
                    format!("{a}.{b}.{c}-{}", pre.join("."))
                }
            })
    }

    proptest! {
        #[test]
        fn semver_matches_the_semver_crate(a in version(), b in version()) {
            let (x, y) = (semver::Version::parse(&a), semver::Version::parse(&b));
            if let (Ok(x), Ok(y)) = (x, y) {
                prop_assert_eq!(Scheme::SemVer.compare(&a, &b), Some(x.cmp_precedence(&y)));
            }
        }
    }
}
