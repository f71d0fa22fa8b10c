//! The loader reads long one-line flow lists of identifiers (`needs: [a, b, …]`) without the
//! YAML parser (`yaml.rs`, `compact_flow_lists`). These tests check that the fast path gives
//! exactly the tree and diagnostics of the full parse, in every YAML context such a list can
//! appear in: block values, sequence items, block scalars, comments, quoted strings, flow
//! mappings, anchors and tags, keys, CRLF lines, and broken files.

use pipe_runner::source::FileId;
use pipe_runner::yaml::{self, NodeKind};
use proptest::prelude::*;

/// Asserts the fast path and the full parse agree on `text`.
fn same(text: &str) -> Result<(), TestCaseError> {
    let fast = yaml::load(FileId(0), text);
    let slow = yaml::load_without_fast_path(FileId(0), text);
    // Compared as debug text: `.nan` loads as a NaN number, which `==` never equals.
    prop_assert_eq!(
        format!("{:?}", fast.root),
        format!("{:?}", slow.root),
        "tree differs for {:?}",
        text
    );
    prop_assert_eq!(
        &fast.diagnostics,
        &slow.diagnostics,
        "diagnostics differ for {:?}",
        text
    );
    Ok(())
}

const ITEMS: &[&str] = &[
    "a", "b1", "job_2", "x-y", "a/b", "c.d", "true", "False", "null", "1", "1.5", "0x1f", "0o7",
    "3.10", "1e3", "_", "on", "yes", "Z9",
];

/// A flow list's inside: items with random spacing around the commas.
fn list() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        (
            proptest::sample::select(ITEMS),
            0..2usize,
            0..3usize,
            // now and then an item that is not an identifier, so the scan must give up
            prop_oneof![20 => Just(""), 1 => Just("'q'"), 1 => Just(":"), 1 => Just("#"), 1 => Just("*a")],
        ),
        0..14,
    )
    .prop_map(|items| {
        let mut out = String::from("[");
        for (i, (item, before, after, odd)) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&" ".repeat(*before));
            out.push_str(item);
            out.push_str(odd);
            out.push_str(&" ".repeat(*after));
        }
        out.push(']');
        out
    })
}

/// One line or a few lines of YAML holding a flow list in some context, at an indentation.
fn fragment() -> impl Strategy<Value = String> {
    let key = proptest::sample::select(&["needs", "branches", "k", "on", "x"][..]);
    (0..3usize, key, list(), list(), 0..14usize).prop_map(|(ind, key, l, m, shape)| {
        let pad = " ".repeat(ind * 2);
        match shape {
            0 => format!("{pad}{key}: {l}\n"),
            1 => format!("{pad}- {l}\n"),
            2 => format!("{pad}{key}: {l} # trailing comment\n"),
            3 => format!("{pad}{key}: |\n{pad}  x: {l}\n{pad}  - {m}\n"),
            4 => format!("{pad}# {key}: {l}\n"),
            5 => format!("{pad}{key}: \"see {l}\"\n"),
            6 => format!("{pad}{key}: &anc {l}\n{pad}{key}2: *anc\n"),
            7 => format!("{pad}{key}: !!seq {l}\n"),
            8 => format!("{pad}{key}: {{\n{pad}  {key}: {l}\n{pad}}}\n"),
            9 => format!("{pad}{l}: v\n"),
            10 => format!("{pad}{key}: {l}\r\n"),
            11 => format!("{pad}{key}:\n{pad}  - {l}\n{pad}  - {m}\n"),
            12 => format!("{pad}{key}: echo {l}\n"),
            _ => format!("{pad}{key}: [\n{pad}  {l}\n{pad}]\n"),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn fast_path_matches_the_full_parse(frags in proptest::collection::vec(fragment(), 1..6)) {
        same(&frags.concat())?;
    }

    #[test]
    fn fast_path_matches_on_arbitrary_text(text in "[ a-z0-9,\\[\\]:#\\n'\"&*!|{}-]{0,200}") {
        same(&text)?;
    }
}

#[test]
fn long_lists_keep_items_values_and_spans() {
    let text = "jobs:\n  d:\n    needs: [a, b,c , 1.5, true, x-y, a/b, z]  # wide\n";
    same(text).expect("same tree");
    let loaded = yaml::load(FileId(0), text);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let root = loaded.root.expect("root");
    let needs = root
        .get("jobs")
        .and_then(|j| j.get("d"))
        .and_then(|d| d.get("needs"))
        .expect("needs");
    let NodeKind::Seq(items) = &needs.kind else {
        panic!("needs is {:?}", needs.kind)
    };
    let texts: Vec<&str> = items.iter().filter_map(|n| n.as_str()).collect();
    assert_eq!(texts, ["a", "b", "c", "1.5", "true", "x-y", "a/b", "z"]);
    let at = |n: &yaml::Node| &text[n.span.start as usize..n.span.end as usize];
    assert_eq!(at(&items[2]), "c");
    assert_eq!(at(needs), "[a, b,c , 1.5, true, x-y, a/b, z]");
}

#[test]
fn lists_the_scan_misreads_fall_back_to_the_full_parse() {
    // inside a block scalar, a quoted string and a comment: the compacted text would lose
    // the list's text, so the full parse must be used
    for text in [
        "run: |\n  x: [a, b, c, d, e, f, g, h]\nother: 1\n",
        "run: \"x [a, b, c, d, e, f, g, h]\"\n",
        "# needs: [a, b, c, d, e, f, g, h]\nk: v\n",
        "run: echo [a, b, c, d, e, f, g, h]\n",
    ] {
        same(text).expect("same tree");
        let root = yaml::load(FileId(0), text).root.expect("root");
        let source = format!("{root:?}");
        if text.starts_with("run:") {
            assert!(
                source.contains("a, b, c, d, e, f, g, h"),
                "the scalar keeps its text: {source}"
            );
        }
    }
    // a file with a problem is reported from the original text: same line, column and message
    let dup = "needs: [a, b, c, d, e, f, g, h]\nneeds: [a, b, c, d, e, f, g, h]\n";
    same(dup).expect("same diagnostics");
    let loaded = yaml::load(FileId(0), dup);
    assert_eq!(loaded.diagnostics.len(), 1);
    assert_eq!(loaded.diagnostics[0].span.start, 32);
}

#[test]
fn the_fast_path_applies_where_it_should() {
    let l = "[a, b1, c, true, 1.5, x-y, a/b, z]";
    let fast = [
        format!("needs: {l}\n"),
        format!("jobs:\n  j:\n    needs: {l}\n"),
        format!("- {l}\n"),
        format!("k: {l}  # comment\n"),
        format!("k: {l}\r\n"),
        format!("k:\n  - {l}\n  - {l}\n"),
        format!("k: {{\n  k: {l}\n}}\n"),
        format!("k:\n  {l}\n"),
    ];
    for text in &fast {
        let loaded = yaml::load_fast_path_only(FileId(0), text);
        assert!(loaded.is_some(), "fast path expected for {text:?}");
        same(text).expect("same tree");
    }
    let slow = [
        // too short to bother
        "needs: [a, b, c]\n".to_owned(),
        // an item that is not an identifier, something after the `]`, a second line
        "needs: [a, b, c, d, e, f, g, 'h']\n".to_owned(),
        format!("needs: {l}, x\n"),
        "needs: [a, b, c, d,\n  e, f, g, h]\n".to_owned(),
        // the scan matches but the parser does not see a flow sequence there
        format!("run: |\n  x: {l}\n"),
        format!("# x: {l}\n"),
        format!("run: echo {l}\n"),
        // a problem in the file: reported from the full parse
        format!("k: {l}\nk: 1\n"),
    ];
    for text in &slow {
        assert!(
            yaml::load_fast_path_only(FileId(0), text).is_none(),
            "no fast path expected for {text:?}"
        );
        same(text).expect("same tree");
    }
}
