//! Dockerfile checks with Trivy's ids. Instructions are read with their line numbers
//! (continuation lines joined, comments and parser directives skipped); stages are tracked
//! so user and health checks look at the final stage only.

use super::{Check, Problem};
use crate::scan::severity::Severity;

/// The Dockerfile checks.
pub static CHECKS: [Check; 17] = [
    Check {
        id: "DS-0001",
        aliases: &["DS001", "AVD-DS-0001"],
        title: "`FROM` uses the `latest` tag or no tag",
        severity: Severity::Medium,
        resolution: "Pin the base image to a version tag or, better, a `@sha256:` digest.",
    },
    Check {
        id: "DS-0002",
        aliases: &["DS002", "AVD-DS-0002"],
        title: "Image runs as root",
        severity: Severity::High,
        resolution: "Add `USER` with a non-root user (not `root` or `0`) to the final stage.",
    },
    Check {
        id: "DS-0004",
        aliases: &["DS004", "AVD-DS-0004"],
        title: "Port 22 exposed",
        severity: Severity::Medium,
        resolution: "Do not expose SSH; use `docker exec` or the orchestrator's exec instead.",
    },
    Check {
        id: "DS-0005",
        aliases: &["DS005", "AVD-DS-0005"],
        title: "`ADD` used where `COPY` suffices",
        severity: Severity::Low,
        resolution: "Use `COPY` for local files; `ADD` only to unpack archives.",
    },
    Check {
        id: "DS-0007",
        aliases: &["DS007", "AVD-DS-0007"],
        title: "Several `ENTRYPOINT` instructions in one stage",
        severity: Severity::Critical,
        resolution: "Keep one `ENTRYPOINT` per stage; only the last takes effect.",
    },
    Check {
        id: "DS-0010",
        aliases: &["DS010", "AVD-DS-0010"],
        title: "`RUN` uses `sudo`",
        severity: Severity::Critical,
        resolution: "Build steps run as root already; drop `sudo` (or switch `USER` around the step).",
    },
    Check {
        id: "DS-0013",
        aliases: &["DS013", "AVD-DS-0013"],
        title: "`RUN cd` used to change directory",
        severity: Severity::Medium,
        resolution: "Use `WORKDIR` instead of `cd`.",
    },
    Check {
        id: "DS-0016",
        aliases: &["DS016", "AVD-DS-0016"],
        title: "Several `CMD` instructions in one stage",
        severity: Severity::High,
        resolution: "Keep one `CMD` per stage; only the last takes effect.",
    },
    Check {
        id: "DS-0017",
        aliases: &["DS017", "AVD-DS-0017"],
        title: "`apt-get update` alone in a `RUN`",
        severity: Severity::High,
        resolution: "Run `apt-get update` and `apt-get install` in the same `RUN`, so a cached update never serves a stale index.",
    },
    Check {
        id: "DS-0021",
        aliases: &["DS021", "AVD-DS-0021"],
        title: "`apt-get install` without `-y`",
        severity: Severity::High,
        resolution: "Add `-y` (`--yes`) so the build never waits for an answer.",
    },
    Check {
        id: "DS-0025",
        aliases: &["DS025", "AVD-DS-0025"],
        title: "`apk add` without `--no-cache`",
        severity: Severity::High,
        resolution: "Use `apk add --no-cache` so the index is not kept in the image.",
    },
    Check {
        id: "DS-0026",
        aliases: &["DS026", "AVD-DS-0026"],
        title: "No `HEALTHCHECK`",
        severity: Severity::Low,
        resolution: "Add a `HEALTHCHECK` to the final stage (or ignore this check when the orchestrator probes health).",
    },
    Check {
        id: "DS-0029",
        aliases: &["DS029", "AVD-DS-0029"],
        title: "`apt-get install` without `--no-install-recommends`",
        severity: Severity::High,
        resolution: "Add `--no-install-recommends` to keep unneeded packages out of the image.",
    },
    Check {
        id: "DS-0031",
        aliases: &["DS031", "AVD-DS-0031"],
        title: "Secret passed through `ENV` or `ARG`",
        severity: Severity::Critical,
        resolution: "Use build secrets (`RUN --mount=type=secret`) instead; `ENV` and `ARG` values stay in the image's history.",
    },
    Check {
        id: "PIPE-DS-0001",
        aliases: &[],
        title: "Remote script piped into a shell",
        severity: Severity::High,
        resolution: "Download the script, verify its checksum or signature, then run it.",
    },
    Check {
        id: "PIPE-DS-0002",
        aliases: &[],
        title: "`ADD` of a URL without `--checksum`",
        severity: Severity::Medium,
        resolution: "Use `ADD --checksum=sha256:…` or download and verify in a `RUN` step.",
    },
    Check {
        id: "PIPE-DS-0003",
        aliases: &[],
        title: "`apt-get install` without cleaning the package lists",
        severity: Severity::Low,
        resolution: "End the same `RUN` with `rm -rf /var/lib/apt/lists/*` (or use a cache mount for `/var/lib/apt`).",
    },
];

fn check_by(id: &str) -> &'static Check {
    CHECKS.iter().find(|c| c.id == id).unwrap_or(&CHECKS[0])
}

/// One instruction.
struct Instr {
    keyword: String,
    args: String,
    line: u32,
    end_line: u32,
    stage: usize,
}

fn parse(text: &str) -> Vec<Instr> {
    let mut out = Vec::new();
    let mut stage = 0usize;
    let mut started = false;
    let mut buf = String::new();
    let mut start = 0u32;
    for (i, raw) in text.lines().enumerate() {
        let n = i as u32 + 1;
        let line = raw.trim();
        if buf.is_empty() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            start = n;
        } else if line.starts_with('#') {
            continue; // comment lines inside a continuation are dropped
        }
        if let Some(cont) = line.strip_suffix('\\') {
            buf.push_str(cont);
            buf.push(' ');
            continue;
        }
        buf.push_str(line);
        let full = std::mem::take(&mut buf);
        let (kw, args) = match full.split_once(char::is_whitespace) {
            Some((k, a)) => (k.to_ascii_uppercase(), a.trim().to_owned()),
            None => (full.to_ascii_uppercase(), String::new()),
        };
        if kw == "FROM" {
            if started {
                stage += 1;
            }
            started = true;
        }
        out.push(Instr {
            keyword: kw,
            args,
            line: start,
            end_line: n,
            stage,
        });
    }
    out
}

/// Options (`--flag`, `--flag=value`) before the arguments of an instruction.
fn split_flags(args: &str) -> (Vec<&str>, Vec<&str>) {
    let mut flags = Vec::new();
    let mut rest = Vec::new();
    for w in args.split_whitespace() {
        if rest.is_empty() && w.starts_with("--") {
            flags.push(w);
        } else {
            rest.push(w);
        }
    }
    (flags, rest)
}

/// The shell commands of a `RUN` (split at `&&`, `||`, `;` and `|`).
fn commands(args: &str) -> Vec<String> {
    let (_, rest) = split_flags(args);
    let s = rest.join(" ");
    let s = if s.trim_start().starts_with('[') {
        // exec form: ["sh", "-c", "…"]
        s.trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|p| p.trim().trim_matches('"'))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        s
    };
    s.split("&&")
        .flat_map(|p| p.split("||"))
        .flat_map(|p| p.split(';'))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

fn words(cmd: &str) -> Vec<&str> {
    cmd.split_whitespace().collect()
}

fn is_apt_install(w: &[&str]) -> bool {
    w.first().is_some_and(|c| *c == "apt-get" || *c == "apt") && w.contains(&"install")
}

const SECRET_NAMES: [&str; 8] = [
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "API_KEY",
    "APIKEY",
    "PRIVATE_KEY",
    "ACCESS_KEY",
];

/// Checks a Dockerfile.
pub fn check(text: &str) -> Vec<Problem> {
    let instrs = parse(text);
    let mut out = Vec::new();
    let mut push = |id: &str, i: &Instr, message: String| {
        out.push(Problem {
            check: check_by(id),
            line: i.line,
            end_line: i.end_line,
            message,
            subject: format!("{} {} {}", i.stage, i.keyword, i.args),
        });
    };
    let mut stage_names: Vec<String> = Vec::new();
    let mut cmd_count: std::collections::BTreeMap<(usize, &str), usize> = Default::default();
    let last_stage = instrs.iter().map(|i| i.stage).max().unwrap_or(0);
    for i in &instrs {
        match i.keyword.as_str() {
            "FROM" => {
                let (_, rest) = split_flags(&i.args);
                let image = rest.first().copied().unwrap_or("");
                let known_stage = stage_names.contains(&image.to_ascii_lowercase());
                if let (Some(as_kw), Some(name)) = (rest.get(1), rest.get(2))
                    && as_kw.eq_ignore_ascii_case("as")
                {
                    stage_names.push(name.to_ascii_lowercase());
                }
                if image.is_empty() || image == "scratch" || image.contains('$') || known_stage {
                    continue;
                }
                if image.contains('@') {
                    continue;
                }
                let last = image.rsplit('/').next().unwrap_or(image);
                match last.split_once(':') {
                    Some((_, "latest")) => {
                        push("DS-0001", i, format!("`{image}` uses the `latest` tag"))
                    }
                    None => push(
                        "DS-0001",
                        i,
                        format!("`{image}` has no tag, so it means `latest`"),
                    ),
                    _ => {}
                }
            }
            "EXPOSE"
                if i.args
                    .split_whitespace()
                    .any(|p| p == "22" || p.starts_with("22/")) =>
            {
                push("DS-0004", i, "port 22 is exposed".into());
            }
            "ADD" => {
                let (flags, rest) = split_flags(&i.args);
                let srcs = &rest[..rest.len().saturating_sub(1)];
                let url = srcs
                    .iter()
                    .any(|s| s.starts_with("http://") || s.starts_with("https://"));
                let git = srcs
                    .iter()
                    .any(|s| s.starts_with("git@") || s.ends_with(".git"));
                let archive = srcs.iter().any(|s| {
                    [
                        ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".txz", ".tbz2", ".gz",
                        ".bz2", ".xz", ".zst",
                    ]
                    .iter()
                    .any(|e| s.ends_with(e))
                });
                if url && !flags.iter().any(|f| f.starts_with("--checksum")) {
                    push(
                        "PIPE-DS-0002",
                        i,
                        "`ADD` downloads a URL without `--checksum`".into(),
                    );
                } else if !url && !git && !archive && !srcs.is_empty() {
                    push(
                        "DS-0005",
                        i,
                        format!("`ADD {}` copies local files: use `COPY`", srcs.join(" ")),
                    );
                }
            }
            "ENTRYPOINT" | "CMD" => {
                let k = if i.keyword == "CMD" {
                    "CMD"
                } else {
                    "ENTRYPOINT"
                };
                let n = cmd_count.entry((i.stage, k)).or_default();
                *n += 1;
                if *n == 2 {
                    let id = if k == "CMD" { "DS-0016" } else { "DS-0007" };
                    push(id, i, format!("a second `{k}` in this stage"));
                }
            }
            "ENV" | "ARG" => {
                let names: Vec<String> = if i.keyword == "ARG" {
                    i.args
                        .split_whitespace()
                        .map(|a| a.split('=').next().unwrap_or(a).to_owned())
                        .collect()
                } else if i.args.contains('=') {
                    i.args
                        .split_whitespace()
                        .filter_map(|a| a.split_once('=').map(|(k, _)| k.to_owned()))
                        .collect()
                } else {
                    i.args
                        .split_whitespace()
                        .next()
                        .map(str::to_owned)
                        .into_iter()
                        .collect()
                };
                for n in names {
                    let up = n.to_ascii_uppercase();
                    if SECRET_NAMES.iter().any(|s| up.contains(s)) {
                        push(
                            "DS-0031",
                            i,
                            format!("`{}` passes `{n}` into the image", i.keyword),
                        );
                    }
                }
            }
            "RUN" => {
                let cmds = commands(&i.args);
                let mut update_only = false;
                let mut has_install = false;
                for c in &cmds {
                    let w = words(c);
                    let Some(first) = w.first() else { continue };
                    if *first == "sudo" {
                        push("DS-0010", i, "`sudo` in a build step".into());
                    }
                    if *first == "cd" {
                        push("DS-0013", i, format!("`{c}` changes directory"));
                    }
                    if (*first == "apt-get" || *first == "apt") && w.contains(&"update") {
                        update_only = true;
                    }
                    if is_apt_install(&w) {
                        has_install = true;
                        if !w.iter().any(|x| {
                            *x == "-y"
                                || *x == "--yes"
                                || *x == "-qy"
                                || *x == "-yq"
                                || *x == "--assume-yes"
                                || (x.starts_with('-') && !x.starts_with("--") && x.contains('y'))
                        }) {
                            push("DS-0021", i, "`apt-get install` without `-y`".into());
                        }
                        if !w.contains(&"--no-install-recommends") {
                            push(
                                "DS-0029",
                                i,
                                "`apt-get install` without `--no-install-recommends`".into(),
                            );
                        }
                    }
                    if *first == "apk" && w.contains(&"add") && !w.contains(&"--no-cache") {
                        push("DS-0025", i, "`apk add` without `--no-cache`".into());
                    }
                }
                let cleaned = i.args.contains("/var/lib/apt/lists")
                    || (i.args.contains("--mount=type=cache") && i.args.contains("/var/lib/apt"));
                if has_install && !cleaned {
                    push(
                        "PIPE-DS-0003",
                        i,
                        "`apt-get install` leaves `/var/lib/apt/lists` in the layer".into(),
                    );
                }
                if update_only && !has_install {
                    push(
                        "DS-0017",
                        i,
                        "`apt-get update` without an install in the same `RUN`".into(),
                    );
                }
                let joined = i.args.replace(' ', "");
                let fetch = joined.contains("curl") || joined.contains("wget");
                if fetch
                    && [
                        "|sh",
                        "|bash",
                        "|sudosh",
                        "|sudobash",
                        "|/bin/sh",
                        "|/bin/bash",
                        "|zsh",
                    ]
                    .iter()
                    .any(|p| joined.contains(p))
                {
                    push(
                        "PIPE-DS-0001",
                        i,
                        "a downloaded script is piped into a shell".into(),
                    );
                }
            }
            _ => {}
        }
    }
    // The final stage: user and health check.
    let final_from = instrs
        .iter()
        .find(|i| i.stage == last_stage && i.keyword == "FROM");
    if let Some(from) = final_from {
        let users: Vec<&Instr> = instrs
            .iter()
            .filter(|i| i.stage == last_stage && i.keyword == "USER")
            .collect();
        match users.last() {
            Some(u) => {
                let name = u.args.split(':').next().unwrap_or("").trim();
                if name == "root" || name == "0" {
                    push("DS-0002", u, format!("the final stage runs as `{name}`"));
                }
            }
            None => push(
                "DS-0002",
                from,
                "the final stage has no `USER`, so it runs as root".into(),
            ),
        }
        if !instrs
            .iter()
            .any(|i| i.stage == last_stage && i.keyword == "HEALTHCHECK")
        {
            push(
                "DS-0026",
                from,
                "the final stage has no `HEALTHCHECK`".into(),
            );
        }
    }
    out
}
