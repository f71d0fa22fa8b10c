//! Property tests of the loader: any text, and any YAML-shaped tree built from workflow
//! words, loads and checks without panicking, and every diagnostic span lies inside the file
//! on character boundaries (rendering slices the text with it).

use pipe_runner::check::{self, CheckOptions};
use pipe_runner::source::{FileId, SourceFile};
use pipe_runner::{Diagnostic, workflow};
use proptest::prelude::*;

fn check_spans(text: &str, diags: &[Diagnostic]) -> Result<(), TestCaseError> {
    for d in diags {
        let (s, e) = (d.span.start as usize, d.span.end as usize);
        prop_assert!(s <= e, "start after end: {d:?}");
        prop_assert!(e <= text.len(), "span past the end ({}): {d:?}", text.len());
        prop_assert!(
            text.is_char_boundary(s) && text.is_char_boundary(e),
            "not on char boundaries: {d:?}"
        );
    }
    Ok(())
}

/// Loads and checks `text`, asserting the span invariants on everything reported.
fn load_and_check(text: &str) -> Result<usize, TestCaseError> {
    let (wf, diags) = workflow::load(FileId(0), text);
    check_spans(text, &diags)?;
    let mut n = diags.len();
    if let Some(wf) = wf {
        let source = SourceFile::new("p.yml", text);
        let opts = CheckOptions {
            root: "/nonexistent-pipe-proptest-root".into(),
            ..CheckOptions::default()
        };
        let found = check::check_workflow(&wf, &source, &opts);
        check_spans(text, &found)?;
        n += found.len();
    }
    Ok(n)
}

/// Words that steer generated trees into the workflow schema's corners.
const KEYS: &[&str] = &[
    "on",
    "jobs",
    "push",
    "pull_request",
    "schedule",
    "cron",
    "timezone",
    "branches",
    "paths",
    "tags",
    "branches-ignore",
    "types",
    "workflow_dispatch",
    "workflow_call",
    "inputs",
    "type",
    "default",
    "options",
    "build",
    "test",
    "runs-on",
    "needs",
    "steps",
    "run",
    "uses",
    "with",
    "env",
    "shell",
    "if",
    "id",
    "strategy",
    "matrix",
    "include",
    "exclude",
    "container",
    "services",
    "image",
    "permissions",
    "contents",
    "outputs",
    "secrets",
    "defaults",
    "concurrency",
    "group",
    "timeout-minutes",
    "<<",
    "Build",
];

const SCALARS: &[&str] = &[
    "ubuntu-latest",
    "build",
    "test",
    "echo hi",
    "actions/checkout@v5",
    "./local",
    "docker://",
    "${{ matrix.os }}",
    "${{ github.ref",
    "* * * * *",
    "0 0 * * 7",
    "'!main'",
    "'[a-'",
    "'./src/**'",
    "bash",
    "fsh",
    "read",
    "write-all",
    "true",
    "null",
    "~",
    "3.10",
    "-1",
    "0",
    "'é ü 日本'",
    "\"a\\tb\"",
    "\"::set-output name=x::y\"",
    "'feature branch'",
];

#[derive(Clone, Debug)]
enum Tree {
    Scalar(String),
    Seq(Vec<Tree>),
    Map(Vec<(String, Tree)>),
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(SCALARS).prop_map(str::to_owned),
        1 => "[a-z0-9 _./*!?-]{0,12}".prop_map(|s| format!("'{s}'")),
    ]
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = scalar().prop_map(Tree::Scalar);
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Tree::Seq),
            proptest::collection::vec(
                (
                    proptest::sample::select(KEYS).prop_map(str::to_owned),
                    inner
                ),
                0..6
            )
            .prop_map(Tree::Map),
        ]
    })
}

/// Renders a tree as block YAML (flow style for empty collections).
fn render(t: &Tree, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match t {
        Tree::Scalar(s) => {
            out.push(' ');
            out.push_str(s);
            out.push('\n');
        }
        Tree::Seq(items) if items.is_empty() => out.push_str(" []\n"),
        Tree::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        Tree::Seq(items) => {
            out.push('\n');
            for i in items {
                out.push_str(&pad);
                out.push('-');
                render(i, indent + 2, out);
            }
        }
        Tree::Map(entries) => {
            out.push('\n');
            for (k, v) in entries {
                out.push_str(&pad);
                out.push_str(k);
                out.push(':');
                render(v, indent + 2, out);
            }
        }
    }
}

fn root() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        (
            proptest::sample::select(KEYS).prop_map(str::to_owned),
            tree(),
        ),
        0..5,
    )
    .prop_map(|entries| {
        let mut out = String::new();
        for (k, v) in entries {
            out.push_str(&k);
            out.push(':');
            render(&v, 2, &mut out);
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        load_and_check(&text)?;
    }

    #[test]
    fn arbitrary_yaml_bytes_never_panic(text in "[ -~\\n\\t:{}\\[\\],&*!|>'\"#%@`-]{0,300}") {
        load_and_check(&text)?;
    }

    #[test]
    fn workflow_shaped_trees_never_panic(text in root()) {
        load_and_check(&text)?;
    }

    #[test]
    fn valid_workflow_with_noise_appended(noise in "\\PC{0,80}") {
        let text = format!(
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo {noise}\n"
        );
        load_and_check(&text)?;
    }
}

#[test]
fn generated_trees_reach_the_checks() {
    // Guards the generator: a valid shape built from the same words loads cleanly, so the
    // property tests above do exercise the checks and not only the YAML parser.
    let text = "on:\n  push:\n    branches: ['!main']\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n";
    let n = load_and_check(text).expect("spans");
    assert_eq!(n, 1, "the negated first pattern is one finding");
}

/// Inputs that once crashed the fuzz target (`fuzz/`), kept as regression tests.
#[test]
fn fuzz_regressions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fuzz_regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz_regressions") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        load_and_check(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n > 0, "no regression inputs in {}", dir.display());
}
