//! Property tests of matrix expansion: the builder against a small independent model of
//! GitHub's rules, and invariants that must hold for any matrix.
//!
//! Values come from a domain where GitHub's loose `==` and structural equality agree (distinct
//! strings ignoring case, no `0`/`1` next to booleans, objects with one key), so the model can use
//! plain equality.

use std::collections::HashSet;

use pipe_runner::context::Contexts;
use pipe_runner::expr::Value;
use pipe_runner::plan::matrix::{self, MatrixSpec};
use pipe_runner::plan::{self, Legs, PlanInput, Selection};
use pipe_runner::source::FileId;
use pipe_runner::workflow;
use proptest::prelude::*;
use serde_json::{Value as Json, json};

fn domain() -> Vec<Json> {
    vec![
        json!("x"),
        json!("y"),
        json!("z"),
        json!("w"),
        json!(2),
        json!(3.5),
        json!(10),
        json!(true),
        json!(false),
        json!({"n": "x"}),
        json!({"n": "y"}),
        json!(["x"]),
    ]
}

const KEYS: [&str; 3] = ["k0", "k1", "k2"];
const EXTRAS: [&str; 2] = ["e0", "e1"];

/// A matrix as JSON: vectors (key → values), include and exclude entries.
#[derive(Clone, Debug)]
struct Case {
    vectors: Vec<(String, Vec<Json>)>,
    include: Vec<Vec<(String, Json)>>,
    exclude: Vec<Vec<(String, Json)>>,
}

fn value() -> impl Strategy<Value = Json> {
    prop::sample::select(domain())
}

/// Vectors with distinct values (`dups` allows repeats).
fn vectors(dups: bool) -> impl Strategy<Value = Vec<(String, Vec<Json>)>> {
    (1usize..=3).prop_flat_map(move |n| {
        let one = move || -> BoxedStrategy<Vec<Json>> {
            if dups {
                prop::collection::vec(value(), 1..=3).boxed()
            } else {
                prop::sample::subsequence(domain(), 1..=3)
                    .prop_shuffle()
                    .boxed()
            }
        };
        prop::collection::vec(one(), n).prop_map(|vs| {
            vs.into_iter()
                .enumerate()
                .map(|(i, v)| (KEYS[i].to_owned(), v))
                .collect()
        })
    })
}

fn entry(keys: Vec<String>, extras: bool) -> BoxedStrategy<Vec<(String, Json)>> {
    let n = keys.len();
    let filter = prop::collection::vec(prop::option::of(value()), n).prop_map(move |vals| {
        keys.iter()
            .zip(vals)
            .filter_map(|(k, v)| v.map(|v| (k.clone(), v)))
            .collect::<Vec<_>>()
    });
    if !extras {
        return filter.boxed();
    }
    let extra = prop::collection::vec(prop::option::of(value()), EXTRAS.len()).prop_map(|vals| {
        EXTRAS
            .iter()
            .zip(vals)
            .filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), v)))
            .collect::<Vec<_>>()
    });
    (filter, extra)
        .prop_map(|(mut f, e)| {
            f.extend(e);
            f
        })
        .boxed()
}

fn case(dups: bool) -> impl Strategy<Value = Case> {
    vectors(dups).prop_flat_map(|vectors| {
        let keys: Vec<String> = vectors.iter().map(|(k, _)| k.clone()).collect();
        let exclude = prop::collection::vec(
            entry(keys.clone(), false).prop_filter("non-empty", |e| !e.is_empty()),
            0..=2,
        );
        let include = prop::collection::vec(
            entry(keys, true).prop_filter("non-empty", |e| !e.is_empty()),
            0..=4,
        );
        (Just(vectors), include, exclude).prop_map(|(vectors, include, exclude)| Case {
            vectors,
            include,
            exclude,
        })
    })
}

fn to_value(j: &Json) -> Value {
    Value::from_json(j.clone())
}

fn obj(pairs: &[(String, Json)]) -> Value {
    Value::object(pairs.iter().map(|(k, v)| (k.clone(), to_value(v))))
}

fn spec(c: &Case) -> MatrixSpec {
    MatrixSpec::from_values(
        c.vectors
            .iter()
            .map(|(k, vs)| (k.clone(), vs.iter().map(to_value).collect()))
            .collect(),
        c.include.iter().map(|e| obj(e)).collect(),
        c.exclude.iter().map(|e| obj(e)).collect(),
    )
}

/// What the model says, leg by leg, as ordered key/value lists.
struct Model {
    legs: Vec<Vec<(String, Json)>>,
    product: usize,
    excluded: usize,
    unmatched: usize,
}

fn get<'a>(pairs: &'a [(String, Json)], k: &str) -> Option<&'a Json> {
    pairs.iter().find(|(x, _)| x == k).map(|(_, v)| v)
}

fn model(c: &Case) -> Model {
    let mut product: Vec<Vec<(String, Json)>> = vec![Vec::new()];
    for (k, values) in &c.vectors {
        product = product
            .into_iter()
            .flat_map(|combo| {
                values.iter().map(move |v| {
                    let mut next = combo.clone();
                    next.push((k.clone(), v.clone()));
                    next
                })
            })
            .collect();
    }
    let is_vector = |k: &str| c.vectors.iter().any(|(x, _)| x == k);
    let fits = |combo: &[(String, Json)], e: &[(String, Json)]| {
        e.iter()
            .filter(|(k, _)| is_vector(k))
            .all(|(k, v)| get(combo, k) == Some(v))
    };
    let total = product.len();
    let kept: Vec<_> = product
        .into_iter()
        .filter(|combo| !c.exclude.iter().any(|e| fits(combo, e)))
        .collect();
    let excluded = total - kept.len();
    let mut matched = vec![false; c.include.len()];
    let mut legs = Vec::new();
    for combo in kept {
        let mut leg = combo.clone();
        for (i, e) in c.include.iter().enumerate() {
            if fits(&combo, e) {
                matched[i] = true;
                for (k, v) in e.iter().filter(|(k, _)| !is_vector(k)) {
                    match leg.iter_mut().find(|(x, _)| x == k) {
                        Some(slot) => slot.1 = v.clone(),
                        None => leg.push((k.clone(), v.clone())),
                    }
                }
            }
        }
        legs.push(leg);
    }
    let mut unmatched = 0;
    for (e, m) in c.include.iter().zip(&matched) {
        if !m {
            unmatched += 1;
            let mut leg: Vec<(String, Json)> =
                e.iter().filter(|(k, _)| is_vector(k)).cloned().collect();
            leg.extend(e.iter().filter(|(k, _)| !is_vector(k)).cloned());
            legs.push(leg);
        }
    }
    Model {
        legs,
        product: total,
        excluded,
        unmatched,
    }
}

/// A leg's values as ordered pairs (insertion order is part of the contract).
fn pairs(v: &Value) -> Vec<(String, Json)> {
    match v.to_json() {
        Json::Object(m) => m.into_iter().collect(),
        other => panic!("leg values must be an object, got {other}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The builder agrees with the model leg by leg, in order, keys in order.
    #[test]
    fn builder_matches_model(c in case(false)) {
        let legs = matrix::build(&spec(&c)).expect("small matrices expand");
        let m = model(&c);
        let got: Vec<_> = legs.iter().map(|l| pairs(&l.values)).collect();
        prop_assert_eq!(got, m.legs);
    }

    /// Leg count = product − excluded + unmatched includes (duplicates allowed).
    #[test]
    fn leg_count(c in case(true)) {
        let legs = matrix::build(&spec(&c)).expect("small matrices expand");
        let m = model(&c);
        prop_assert_eq!(legs.len(), m.product - m.excluded + m.unmatched);
    }

    /// With distinct vector values and distinct include entries, no two legs are identical.
    #[test]
    fn legs_are_distinct(c in case(false)) {
        let distinct_includes = c.include.iter().map(|e| format!("{e:?}")).collect::<HashSet<_>>().len() == c.include.len();
        prop_assume!(distinct_includes);
        let legs = matrix::build(&spec(&c)).expect("small matrices expand");
        let seen: HashSet<String> = legs.iter().map(|l| l.values.to_json().to_string()).collect();
        prop_assert_eq!(seen.len(), legs.len());
    }

    /// Includes never change original values: each product leg starts with its combination's
    /// vector values, in product order (first key slowest).
    #[test]
    fn originals_preserved_in_product_order(c in case(false)) {
        let legs = matrix::build(&spec(&c)).expect("small matrices expand");
        let m = model(&c);
        let n_product = m.product - m.excluded;
        let k = c.vectors.len();
        for (leg, want) in legs.iter().zip(&m.legs).take(n_product) {
            let got = pairs(&leg.values);
            prop_assert_eq!(&got[..k], &want[..k]);
        }
    }

    /// Through the whole pipeline (YAML → load → plan): `job-index` is contiguous from 0,
    /// `job-total` counts every leg, and names show only the original vector values.
    #[test]
    fn planned_legs_are_indexed_and_named(c in case(false)) {
        let yaml = workflow_yaml(&c);
        let (wf, _) = workflow::load(FileId(0), &yaml);
        let wf = wf.expect("generated workflow loads");
        let ctx = Contexts::new();
        let p = plan::plan(&PlanInput { workflow: &wf, path: "gen.yml", contexts: &ctx, selection: &Selection::default() })
            .expect("plans");
        let Legs::Expanded { legs } = &p.jobs[0].legs else { panic!("expanded") };
        let m = model(&c);
        // Fully excluded matrices run once without a matrix.
        let want = m.legs.len().max(1);
        prop_assert_eq!(legs.len(), want);
        prop_assert_eq!(p.jobs[0].job_total(), Some(want));
        for (i, leg) in legs.iter().enumerate() {
            prop_assert_eq!(leg.job_index, i);
        }
        let n_product = m.product - m.excluded;
        let k = c.vectors.len();
        for (leg, want) in legs.iter().zip(&m.legs) .take(n_product) {
            let mut shown = Vec::new();
            for (_, v) in &want[..k] {
                leaves(v, &mut shown);
            }
            shown.retain(|s| !s.is_empty());
            let expect = if shown.is_empty() { "t".to_owned() } else { format!("t ({})", shown.join(", ")) };
            prop_assert_eq!(&leg.name, &expect);
        }
    }

    /// Without `exclude`, more than 256 legs is an error and 256 or fewer is not.
    #[test]
    fn leg_limit(a in 1usize..=24, b in 1usize..=24, extra in 0usize..=3) {
        let vec_of = |n: usize| (0..n).map(|i| Value::Number(i as f64 + 2.0)).collect::<Vec<_>>();
        let include = (0..extra).map(|i| Value::object([("k0", Value::str(format!("new{i}")))])).collect();
        let s = MatrixSpec::from_values(vec![("k0".into(), vec_of(a)), ("k1".into(), vec_of(b))], include, vec![]);
        let total = a * b + extra;
        match matrix::build(&s) {
            Ok(legs) => { prop_assert!(total <= 256); prop_assert_eq!(legs.len(), total); }
            Err(e) => { prop_assert!(total > 256, "{}", e.message); }
        }
    }
}

fn leaves(v: &Json, out: &mut Vec<String>) {
    match v {
        Json::Array(a) => a.iter().for_each(|x| leaves(x, out)),
        Json::Object(o) => o.values().for_each(|x| leaves(x, out)),
        Json::String(s) => out.push(s.clone()),
        Json::Null => {}
        other => out.push(Value::from_json(other.clone()).as_gh_str().into_owned()),
    }
}

/// The case as a workflow (JSON is valid YAML flow syntax).
fn workflow_yaml(c: &Case) -> String {
    let mut y = String::from(
        "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps: [{run: echo}]\n    strategy:\n      matrix:\n",
    );
    for (k, vs) in &c.vectors {
        y.push_str(&format!("        {k}: {}\n", Json::Array(vs.clone())));
    }
    for (name, list) in [("include", &c.include), ("exclude", &c.exclude)] {
        if list.is_empty() {
            continue;
        }
        y.push_str(&format!("        {name}:\n"));
        for e in list {
            let o: serde_json::Map<String, Json> = e.iter().cloned().collect();
            y.push_str(&format!("          - {}\n", Json::Object(o)));
        }
    }
    y
}
