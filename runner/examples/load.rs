//! Times loading (and optionally checking) one workflow file in process:
//! `cargo run --release -p pipe-runner --example load -- FILE [--check]`.

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: load FILE [--check]")?;
    let check = args.next().as_deref() == Some("--check");
    let text = std::fs::read_to_string(&path)?;
    let t0 = Instant::now();
    let mut events = 0usize;
    let mut p = granit_parser::Parser::new_from_str(&text);
    while let Some(Ok(_)) = p.next_event() {
        events += 1;
    }
    let parse = t0.elapsed();
    let t1 = Instant::now();
    let loaded = pipe_runner::yaml::load(pipe_runner::FileId(0), &text);
    let tree = t1.elapsed();
    let t2 = Instant::now();
    let (wf, diags) = pipe_runner::workflow::load(pipe_runner::FileId(0), &text);
    let model = t2.elapsed();
    let mut found = diags.len();
    let mut checked = std::time::Duration::ZERO;
    if check && let Some(wf) = &wf {
        let src = pipe_runner::SourceFile::new(&path, text.as_str());
        let t3 = Instant::now();
        found += pipe_runner::check::check_workflow(wf, &src, &Default::default()).len();
        checked = t3.elapsed();
    }
    println!(
        "{} bytes, {events} events: parser {parse:?}, node tree {tree:?}, workflow::load {model:?}, checks {checked:?}, {found} findings, root {}",
        text.len(),
        loaded.root.is_some()
    );
    Ok(())
}
