//! The command line's help: every command's own `--help` and `-h` start with the line that
//! `pipe --help` lists for it, and its arguments and the global ones are there.

use crate::common;

/// `(name, about)` of each command in `pipe --help`, continuation lines joined.
fn listed(help: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut in_list = false;
    for line in help.lines() {
        if line == "Commands:" {
            in_list = true;
            continue;
        }
        if !in_list {
            continue;
        }
        if line.is_empty() {
            break;
        }
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent == 2 {
            let (name, about) = text.split_once(' ').unwrap_or((text, ""));
            out.push((name.to_owned(), about.trim().to_owned()));
        } else if let Some(last) = out.last_mut() {
            last.1.push(' ');
            last.1.push_str(text);
        }
    }
    out
}

/// The text before `Usage:`, whitespace collapsed.
fn about(help: &str) -> String {
    let head = help.split("\nUsage:").next().unwrap_or_default();
    head.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn every_command_help_starts_with_its_listed_about() {
    let dir = tempfile::tempdir().expect("tmp");
    let top = common::pipe(dir.path(), &["--help"]);
    assert_eq!(top.code, Some(0), "{}", top.stderr);
    let commands = listed(&top.stdout);
    // `help` is clap's own; the rest are pipe's 30 commands.
    assert!(commands.len() >= 30, "{commands:?}");
    for (name, listed_about) in commands.iter().filter(|(n, _)| n != "help") {
        let short = common::pipe(dir.path(), &[name, "-h"]);
        assert_eq!(short.code, Some(0), "pipe {name} -h: {}", short.stderr);
        assert_eq!(about(&short.stdout), *listed_about, "pipe {name} -h");
        assert!(
            short.stdout.contains(&format!("Usage: pipe {name}")),
            "pipe {name} -h:\n{}",
            short.stdout
        );
        // The long help starts with the same line (then may say more) and carries the
        // global options too.
        let long = common::pipe(dir.path(), &[name, "--help"]);
        assert_eq!(long.code, Some(0), "pipe {name} --help: {}", long.stderr);
        assert!(
            about(&long.stdout).starts_with(listed_about.trim_end_matches('.')),
            "pipe {name} --help starts with {:?}, listed as {listed_about:?}",
            about(&long.stdout)
        );
        for global in ["--quiet", "--verbose", "--color", "--log-format"] {
            assert!(
                long.stdout.contains(global),
                "pipe {name} --help lacks {global}"
            );
        }
    }
}

#[test]
fn run_help_names_its_own_options() {
    let dir = tempfile::tempdir().expect("tmp");
    let run = common::pipe(dir.path(), &["run", "--help"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for opt in [
        "--workflow",
        "--job",
        "--parallel",
        "--secret",
        "--summary",
        "--json",
    ] {
        assert!(run.stdout.contains(opt), "pipe run --help lacks {opt}");
    }
    // Arguments of a command are not taken by another one.
    let wrong = common::pipe(dir.path(), &["runs", "--secret", "x"]);
    assert_eq!(wrong.code, Some(2), "{}", wrong.stderr);
    assert!(wrong.stderr.contains("--secret"), "{}", wrong.stderr);
}
