//! Fuzz target: loading and checking any text never panics, and every diagnostic's span lies
//! inside the file on character boundaries (the renderer slices the text with it), and the
//! YAML layer's fast path for long flow lists agrees with the full parse.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pipe_runner::check::{self, CheckOptions};
use pipe_runner::source::{FileId, SourceFile};
use pipe_runner::{Diagnostic, workflow};

fn assert_spans(text: &str, diags: &[Diagnostic]) {
    for d in diags {
        let (s, e) = (d.span.start as usize, d.span.end as usize);
        assert!(s <= e && e <= text.len(), "span {s}..{e} outside 0..{}", text.len());
        assert!(
            text.is_char_boundary(s) && text.is_char_boundary(e),
            "span {s}..{e} not on char boundaries: {d:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    // Files that are not UTF-8 are reported before loading; the loader takes text.
    let text = String::from_utf8_lossy(data);
    // The fast path for long flow lists must give exactly the full parse's tree and findings.
    // Compared as debug text: `.nan` loads as a NaN number, which `==` never equals.
    let fast = pipe_runner::yaml::load(FileId(0), &text);
    let full = pipe_runner::yaml::load_without_fast_path(FileId(0), &text);
    assert_eq!(
        format!("{:?}", fast.root),
        format!("{:?}", full.root),
        "fast path tree differs"
    );
    assert_eq!(fast.diagnostics, full.diagnostics, "fast path findings differ");
    let (wf, diags) = workflow::load(FileId(0), &text);
    assert_spans(&text, &diags);
    let source = SourceFile::new("fuzz.yml", text.as_ref());
    if let Some(wf) = wf {
        // An empty root keeps local `uses:` from reading the fuzzer's working directory.
        let opts = CheckOptions {
            root: std::path::PathBuf::from("/nonexistent-pipe-fuzz-root"),
            ..CheckOptions::default()
        };
        let found = check::check_workflow(&wf, &source, &opts);
        assert_spans(&text, &found);
        for d in diags.iter().chain(&found) {
            let _ = source.line_col(d.span.start);
            let _ = source.slice(d.span);
        }
        // The filter matcher the runner uses must not panic either.
        for t in &wf.on {
            for (_, patterns) in &t.filters {
                let ps: Vec<String> = patterns.iter().map(|p| p.text.clone()).collect();
                let _ = check::glob::filter_matches(&ps, "refs/heads/main");
                let _ = check::glob::filter_matches(&ps, "src/a/b.rs");
            }
        }
    }
    let _ = workflow::load_action(FileId(0), &text);
});
