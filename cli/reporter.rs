//! The terminal reporter of `pipe run`: live logs prefixed by the job's display name, a
//! progress view on a TTY (indicatif, hidden otherwise or with `--progress=plain`), a final
//! table, and `--json` events on stdout.
//!
//! Logs and human messages go to stderr; stdout carries only data (`--json`). On a TTY,
//! `::group::` blocks are folded: their lines are held back and replaced by the group title,
//! and shown after all when the step fails (or always with `-v`).

use std::io::{BufWriter, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use pipe_runner::event::{Conclusion, JobRef, RunEvent};
use pipe_runner::run::commands::{Annotation, Level};
use pipe_runner::run::report::{NoticeLevel, Reporter};

use crate::output::Styles;

/// How live output is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ProgressMode {
    /// A live view on a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Plain prefixed lines.
    Plain,
}

struct Group {
    job: String,
    step: usize,
    title: String,
    lines: Vec<u8>,
}

struct State {
    err: BufWriter<std::io::Stderr>,
    bars: Vec<(String, ProgressBar)>,
    groups: Vec<Group>,
}

/// Prints a run to the terminal.
pub struct Terminal {
    styles: Styles,
    quiet: bool,
    verbose: bool,
    json: bool,
    fold: bool,
    multi: Option<MultiProgress>,
    state: Mutex<State>,
}

impl Terminal {
    /// A reporter; `live` enables the progress view.
    pub fn new(styles: Styles, quiet: bool, verbose: bool, json: bool, live: bool) -> Self {
        let multi = live.then(|| {
            let m = MultiProgress::new();
            m.set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            m
        });
        Terminal {
            styles,
            quiet,
            verbose,
            json,
            fold: live && !verbose,
            multi,
            state: Mutex::new(State {
                err: BufWriter::with_capacity(64 * 1024, std::io::stderr()),
                bars: Vec::new(),
                groups: Vec::new(),
            }),
        }
    }

    fn prefix(&self, job: &JobRef) -> String {
        self.styles
            .paint(self.styles.dim, &format!("[{}]", job.name))
    }

    /// Writes text lines to stderr, above the progress bars when they are shown.
    fn emit(&self, state: &mut State, text: &str) {
        match &self.multi {
            Some(m) => {
                for line in text.lines() {
                    let _ = m.println(line);
                }
            }
            None => {
                let _ = state.err.write_all(text.as_bytes());
                let _ = state.err.flush();
            }
        }
    }

    fn json_line(&self, value: &serde_json::Value) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, value);
        let _ = out.write_all(b"\n");
    }

    /// Stops the progress view (before the final table).
    pub fn finish(&self) {
        if let Ok(mut st) = self.state.lock() {
            for (_, b) in st.bars.drain(..) {
                b.finish_and_clear();
            }
            let _ = st.err.flush();
        }
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }

    fn conclusion_word(&self, c: Conclusion) -> String {
        match c {
            Conclusion::Success => self.styles.paint(self.styles.success, "success"),
            Conclusion::Failure => self.styles.paint(self.styles.error, "failure"),
            Conclusion::Cancelled => self.styles.paint(self.styles.warning, "cancelled"),
            Conclusion::Skipped => self.styles.paint(self.styles.dim, "skipped"),
        }
    }
}

impl Reporter for Terminal {
    fn event(&self, event: &RunEvent) {
        if self.json {
            if let Ok(mut v) = serde_json::to_value(event) {
                if let Some(o) = v.as_object_mut() {
                    o.insert(
                        "version".into(),
                        serde_json::json!(pipe_runner::event::SCHEMA_VERSION),
                    );
                }
                self.json_line(&v);
            }
            return;
        }
        if self.quiet {
            return;
        }
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        match event {
            RunEvent::JobStarted { job } => {
                if let Some(m) = &self.multi {
                    let bar = m.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {prefix} {wide_msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(job.name.clone());
                    bar.enable_steady_tick(Duration::from_millis(100));
                    st.bars.push((job.name.clone(), bar));
                }
            }
            RunEvent::StepStarted { job, step } => {
                if let Some((_, bar)) = st.bars.iter().find(|(n, _)| *n == job.name) {
                    bar.set_message(step.name.clone());
                }
                let line = format!(
                    "{} {}\n",
                    self.prefix(job),
                    self.styles.paint(self.styles.bold, &step.name)
                );
                self.emit(&mut st, &line);
            }
            RunEvent::StepFinished {
                job,
                step,
                outcome,
                conclusion,
                error,
                cache,
                ..
            } => {
                // A failed step shows the groups it folded away.
                if *outcome == Conclusion::Failure {
                    let held: Vec<Group> = {
                        let (mine, rest): (Vec<Group>, Vec<Group>) = st
                            .groups
                            .drain(..)
                            .partition(|g| g.job == job.name && g.step == step.index);
                        st.groups = rest;
                        mine
                    };
                    for g in held {
                        let text = String::from_utf8_lossy(&g.lines).into_owned();
                        self.emit(&mut st, &text);
                    }
                }
                if *outcome == Conclusion::Failure
                    || *conclusion != Conclusion::Success && *conclusion != Conclusion::Skipped
                {
                    let mut line = format!(
                        "{} {} {}",
                        self.prefix(job),
                        self.conclusion_word(*outcome),
                        step.name
                    );
                    if *outcome == Conclusion::Failure && *conclusion == Conclusion::Success {
                        line.push_str(" (continue-on-error)");
                    }
                    if let Some(e) = error {
                        line.push_str(&format!(": {e}"));
                    }
                    line.push('\n');
                    self.emit(&mut st, &line);
                }
                if let Some(c) = cache
                    && c.status == pipe_runner::event::CacheStatus::Hit
                {
                    let saved = c
                        .saved_ms
                        .map(|ms| format!(", saved {}", human_ms(ms)))
                        .unwrap_or_default();
                    let line = format!(
                        "{} {}\n",
                        self.prefix(job),
                        self.styles.paint(
                            self.styles.dim,
                            &format!(
                                "cache hit: {} replayed{saved} (key {})",
                                step.name,
                                &c.key[..12.min(c.key.len())]
                            )
                        )
                    );
                    self.emit(&mut st, &line);
                }
            }
            RunEvent::JobFinished {
                job,
                conclusion,
                duration_ms,
                ..
            } => {
                if let Some(pos) = st.bars.iter().position(|(n, _)| *n == job.name) {
                    let (_, bar) = st.bars.remove(pos);
                    bar.finish_and_clear();
                }
                let line = format!(
                    "{} {} {}\n",
                    self.prefix(job),
                    self.conclusion_word(*conclusion),
                    self.styles
                        .paint(self.styles.dim, &format!("({})", human_ms(*duration_ms)))
                );
                self.emit(&mut st, &line);
            }
            _ => {}
        }
    }

    fn output(&self, job: &JobRef, step: usize, lines: &[u8]) {
        if self.json {
            let text = String::from_utf8_lossy(lines);
            for line in text.lines() {
                self.json_line(&serde_json::json!({
                    "version": pipe_runner::event::SCHEMA_VERSION,
                    "event": "log",
                    "job": job,
                    "step": step,
                    "line": line,
                }));
            }
            return;
        }
        if self.quiet {
            return;
        }
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if self.fold
            && let Some(g) = st
                .groups
                .iter_mut()
                .rev()
                .find(|g| g.job == job.name && g.step == step)
        {
            let prefix = format!("[{}]   ", job.name);
            for line in lines.split_inclusive(|b| *b == b'\n') {
                g.lines.extend_from_slice(prefix.as_bytes());
                g.lines.extend_from_slice(line);
            }
            return;
        }
        let prefix = self.prefix(job);
        let mut buf = Vec::with_capacity(lines.len() + 32);
        for line in lines.split_inclusive(|b| *b == b'\n') {
            buf.extend_from_slice(prefix.as_bytes());
            buf.push(b' ');
            buf.extend_from_slice(line);
        }
        match &self.multi {
            Some(_) => {
                let text = String::from_utf8_lossy(&buf).into_owned();
                self.emit(&mut st, &text);
            }
            None => {
                let _ = st.err.write_all(&buf);
                let _ = st.err.flush();
            }
        }
    }

    fn group(&self, job: &JobRef, step: usize, title: Option<&str>) {
        if self.json || self.quiet {
            return;
        }
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        match title {
            Some(t) => {
                if self.fold {
                    st.groups.push(Group {
                        job: job.name.clone(),
                        step,
                        title: t.to_owned(),
                        lines: Vec::new(),
                    });
                } else {
                    let line = format!("{} ▸ {t}\n", self.prefix(job));
                    self.emit(&mut st, &line);
                }
            }
            None => {
                if self.fold
                    && let Some(pos) = st
                        .groups
                        .iter()
                        .rposition(|g| g.job == job.name && g.step == step)
                {
                    let g = st.groups.remove(pos);
                    let n = g.lines.iter().filter(|b| **b == b'\n').count();
                    let line = format!(
                        "{} ▸ {} {}\n",
                        self.prefix(job),
                        g.title,
                        self.styles
                            .paint(self.styles.dim, &format!("({n} lines folded)"))
                    );
                    self.emit(&mut st, &line);
                } else if !self.fold {
                    // Plain lines mark the end too, so a reader of the log (the server's web
                    // UI) can fold the group.
                    let line = format!("{} \u{25c2} end of group\n", self.prefix(job));
                    self.emit(&mut st, &line);
                }
            }
        }
    }

    fn annotation(&self, job: &JobRef, _step: Option<usize>, a: &Annotation) {
        if self.json {
            self.json_line(&serde_json::json!({
                "version": pipe_runner::event::SCHEMA_VERSION,
                "event": "annotation",
                "job": job,
                "annotation": a,
            }));
            return;
        }
        let (word, style) = match a.level {
            Level::Error => ("error", self.styles.error),
            Level::Warning => ("warning", self.styles.warning),
            Level::Notice => ("notice", self.styles.hint),
        };
        let loc = match (&a.file, a.line) {
            (Some(f), Some(l)) => format!(" {f}:{l}:"),
            (Some(f), None) => format!(" {f}:"),
            _ => String::new(),
        };
        let title = a
            .title
            .as_ref()
            .map(|t| format!("{t}: "))
            .unwrap_or_default();
        let line = format!(
            "{} {}{loc} {title}{}\n",
            self.prefix(job),
            self.styles.paint(style, &format!("{word}:")),
            a.message
        );
        if let Ok(mut st) = self.state.lock() {
            self.emit(&mut st, &line);
        }
    }

    fn notice(&self, job: Option<&JobRef>, level: NoticeLevel, message: &str) {
        if level == NoticeLevel::Debug && !self.verbose {
            return;
        }
        if self.quiet && level != NoticeLevel::Error {
            return;
        }
        let (word, style) = match level {
            NoticeLevel::Debug => ("debug", self.styles.dim),
            NoticeLevel::Info => ("info", self.styles.hint),
            NoticeLevel::Warning => ("warning", self.styles.warning),
            NoticeLevel::Error => ("error", self.styles.error),
        };
        let prefix = job
            .map(|j| format!("{} ", self.prefix(j)))
            .unwrap_or_default();
        let line = format!(
            "{prefix}{} {message}\n",
            self.styles.paint(style, &format!("{word}:"))
        );
        if let Ok(mut st) = self.state.lock() {
            self.emit(&mut st, &line);
        }
    }
}

/// `1.2s`, `340ms`, `2m03s`.
pub fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}
