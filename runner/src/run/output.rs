//! A step's output on its way out: split into lines, workflow commands acted on, secrets
//! masked, written to the step's log file and passed to the reporter in batches.
//!
//! The hot path is built for throughput (a step may print gigabytes): lines are found with
//! `memchr`, a line is only inspected further when its first non-blank bytes are `::`, masking
//! is skipped while no secret is registered, and the reporter gets one call per read chunk, not
//! one per line.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::Arc;

use indexmap::IndexMap;

use crate::event::JobRef;
use crate::executor::OutputSink;
use crate::run::commands::{Annotation, Command, CommandState, Level};
use crate::run::mask::Masker;
use crate::run::report::{NoticeLevel, Reporter};

/// Collects a step's output and the effects of its workflow commands.
pub struct StepOutput {
    job: JobRef,
    step: usize,
    reporter: Arc<dyn Reporter>,
    masker: Masker,
    /// Where the log goes; the file is created when the first line arrives (a step that
    /// prints nothing costs no file).
    log_path: Option<std::path::PathBuf>,
    log: Option<BufWriter<File>>,
    /// Append to the log file instead of starting it (steps of composite actions share the
    /// log of the step that runs the action).
    append: bool,
    partial: Vec<u8>,
    batch: Vec<u8>,
    commands: CommandState,
    debug: bool,
    /// Outputs set with the deprecated `::set-output`.
    pub outputs: IndexMap<String, String>,
    /// State saved with the deprecated `::save-state`.
    pub state: IndexMap<String, String>,
    /// Whether a `::error` annotation was printed.
    pub errors: usize,
    /// Why a workflow command could not be processed, if one could not: that fails the step
    /// (the runner's `CommandResult = Failed`).
    pub command_error: Option<String>,
}

impl StepOutput {
    /// A sink for one step; the file at `log` (created on first output, with its folder)
    /// receives the masked lines.
    pub fn new(
        job: JobRef,
        step: usize,
        reporter: Arc<dyn Reporter>,
        masker: Masker,
        log: Option<std::path::PathBuf>,
        debug: bool,
    ) -> Self {
        StepOutput {
            job,
            step,
            reporter,
            masker,
            log_path: log,
            log: None,
            append: false,
            partial: Vec::new(),
            batch: Vec::with_capacity(64 * 1024),
            commands: CommandState::default(),
            debug,
            outputs: IndexMap::new(),
            state: IndexMap::new(),
            errors: 0,
            command_error: None,
        }
    }

    /// Appends to the log file instead of replacing it.
    pub fn appending(mut self) -> Self {
        self.append = true;
        self
    }

    fn emit_line(&mut self, line: &[u8]) {
        // `line` excludes the line break.
        let text_start = line
            .iter()
            .position(|b| *b != b' ' && *b != b'\t')
            .unwrap_or(line.len());
        if line[text_start..].starts_with(b"::") {
            let s = String::from_utf8_lossy(line);
            let s = s.trim_end_matches('\r');
            if let Some(cmd) = self.commands.feed(s) {
                self.flush_batch();
                self.apply(cmd, s);
                return;
            }
        }
        if self.masker.is_empty() {
            self.batch.extend_from_slice(line);
        } else {
            self.masker.mask_bytes_into(line, &mut self.batch);
        }
        self.batch.push(b'\n');
    }

    fn push_text_line(&mut self, text: &str) {
        self.masker
            .mask_bytes_into(text.as_bytes(), &mut self.batch);
        self.batch.push(b'\n');
    }

    fn apply(&mut self, cmd: Command, raw: &str) {
        if self.commands.echo {
            self.push_text_line(raw);
            self.flush_batch();
        }
        match cmd {
            Command::Group(title) => {
                let title = self.masker.mask(&title);
                if let Some(log) = self.log_file() {
                    let _ = writeln!(log, "::group::{title}");
                }
                self.reporter.group(&self.job, self.step, Some(&title));
            }
            Command::EndGroup => {
                if let Some(log) = self.log_file() {
                    let _ = writeln!(log, "::endgroup::");
                }
                self.reporter.group(&self.job, self.step, None);
            }
            Command::Annotation(mut a) => {
                a.message = self.masker.mask(&a.message);
                a.title = a.title.map(|t| self.masker.mask(&t));
                if a.level == Level::Error {
                    self.errors += 1;
                }
                let prefix = match a.level {
                    Level::Error => "Error",
                    Level::Warning => "Warning",
                    Level::Notice => "Notice",
                };
                let line = format!("{prefix}: {}", a.message);
                if let Some(log) = self.log_file() {
                    let _ = writeln!(log, "{line}");
                }
                self.reporter.annotation(&self.job, Some(self.step), &a);
            }
            Command::AddMask(v) => self.masker.add(&v),
            Command::StopCommands(_) | Command::Echo(_) => {}
            Command::Debug(msg) => {
                if self.debug {
                    let msg = self.masker.mask(&msg);
                    self.push_text_line(&format!("##[debug]{msg}"));
                }
            }
            Command::SetOutput { name, value } => {
                self.reporter.notice(
                    Some(&self.job),
                    NoticeLevel::Warning,
                    "the `set-output` command is deprecated; write to `$GITHUB_OUTPUT` instead",
                );
                self.outputs.insert(name, value);
            }
            Command::SaveState { name, value } => {
                self.reporter.notice(
                    Some(&self.job),
                    NoticeLevel::Warning,
                    "the `save-state` command is deprecated; write to `$GITHUB_STATE` instead",
                );
                self.state.insert(name, value);
            }
            Command::Disabled(name) => self.command_failed(
                raw,
                format!(
                    "the `{name}` command is disabled; use the environment files (`$GITHUB_ENV`, `$GITHUB_PATH`) instead"
                ),
            ),
            Command::Invalid(why) => self.command_failed(raw, why),
        }
    }

    /// A command that could not be processed: reported as an error, and the step fails.
    fn command_failed(&mut self, raw: &str, why: String) {
        let message = self.masker.mask(&format!(
            "unable to process command `{}`: {why}",
            raw.trim()
        ));
        let a = Annotation {
            level: Level::Error,
            message: message.clone(),
            file: None,
            line: None,
            end_line: None,
            col: None,
            end_col: None,
            title: None,
        };
        self.reporter.annotation(&self.job, Some(self.step), &a);
        if self.command_error.is_none() {
            self.command_error = Some(message);
        }
    }

    /// The log writer, opening the file on first use.
    fn log_file(&mut self) -> Option<&mut BufWriter<File>> {
        if self.log.is_none() {
            let path = self.log_path.take()?;
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let file = if self.append {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
            } else {
                File::create(&path)
            };
            self.log = file.ok().map(|f| BufWriter::with_capacity(64 * 1024, f));
        }
        self.log.as_mut()
    }

    fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        if let Some(log) = self.log_file() {
            let _ = log.write_all(&batch);
        }
        self.batch = batch;
        self.reporter.output(&self.job, self.step, &self.batch);
        self.batch.clear();
    }

    /// Writes a line the runner itself adds to the step's log (e.g. an error message).
    pub fn runner_line(&mut self, text: &str) {
        self.push_text_line(text);
        self.flush_batch();
    }

    /// Processes the trailing partial line and flushes everything.
    pub fn finish(&mut self) {
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.emit_line(&last);
        }
        self.flush_batch();
        // Only a file that was opened needs flushing; a silent step has none.
        if let Some(log) = self.log.as_mut() {
            let _ = log.flush();
        }
    }
}

impl StepOutput {
    /// Plain output lines (no commands among them): masked and batched in one go.
    fn plain_block(&mut self, block: &[u8]) {
        if block.is_empty() {
            return;
        }
        if self.masker.is_empty() {
            self.batch.extend_from_slice(block);
        } else {
            self.masker.mask_bytes_into(block, &mut self.batch);
        }
    }

    /// Complete lines (`block` ends with `\n`). Only lines whose first non-blank bytes are
    /// `::` can be commands, so the block is searched for `::` and everything between such
    /// lines is passed through whole.
    fn lines_block(&mut self, block: &[u8]) {
        let finder = memchr::memmem::Finder::new(b"::");
        let mut start = 0;
        let mut search = 0;
        while let Some(rel) = finder.find(&block[search..]) {
            let hit = search + rel;
            let line_start = memchr::memrchr(b'\n', &block[..hit]).map_or(0, |i| i + 1);
            let line_end = memchr::memchr(b'\n', &block[hit..]).map_or(block.len(), |i| hit + i);
            if line_start >= start
                && block[line_start..hit]
                    .iter()
                    .all(|b| *b == b' ' || *b == b'\t')
            {
                self.plain_block(&block[start..line_start]);
                self.emit_line(&block[line_start..line_end]);
                start = (line_end + 1).min(block.len());
            }
            search = (line_end + 1).min(block.len());
            if search >= block.len() {
                break;
            }
        }
        self.plain_block(&block[start..]);
    }
}

impl StepOutput {
    /// The capture fast path: with no partial line pending, nothing to mask and no `::` in the
    /// chunk, its complete lines cannot hold a workflow command or a secret, so they go to the
    /// log file and the reporter as they are — no copy into the batch, no per-line work. Returns
    /// false (having done nothing) when the chunk needs the general path.
    fn write_plain(&mut self, bytes: &[u8]) -> bool {
        if !self.partial.is_empty() || !self.batch.is_empty() || !self.masker.is_empty() {
            return false;
        }
        if memchr::memmem::find(bytes, b"::").is_some() {
            return false;
        }
        let Some(last) = memchr::memrchr(b'\n', bytes) else {
            return false;
        };
        let (lines, tail) = bytes.split_at(last + 1);
        if let Some(log) = self.log_file() {
            let _ = log.write_all(lines);
        }
        self.reporter.output(&self.job, self.step, lines);
        self.partial.extend_from_slice(tail);
        true
    }
}

impl OutputSink for StepOutput {
    fn write(&mut self, bytes: &[u8]) {
        if self.write_plain(bytes) {
            return;
        }
        let mut rest = bytes;
        if !self.partial.is_empty() {
            match memchr::memchr(b'\n', rest) {
                None => {
                    self.partial.extend_from_slice(rest);
                    return;
                }
                Some(i) => {
                    let mut line = std::mem::take(&mut self.partial);
                    line.extend_from_slice(&rest[..i]);
                    self.emit_line(&line);
                    rest = &rest[i + 1..];
                }
            }
        }
        match memchr::memrchr(b'\n', rest) {
            Some(last) => {
                self.lines_block(&rest[..=last]);
                self.partial.extend_from_slice(&rest[last + 1..]);
            }
            None => self.partial.extend_from_slice(rest),
        }
        self.flush_batch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::report::Recorder;

    #[test]
    fn lines_commands_and_masks() {
        let rec = Arc::new(Recorder::default());
        let masker = Masker::new();
        masker.add("topsecret");
        let job = JobRef {
            id: "j".into(),
            name: "j".into(),
            matrix: None,
            key: "j".into(),
        };
        let mut out = StepOutput::new(job, 0, rec.clone(), masker.clone(), None, false);
        out.write(b"hello topsecret\n::add-mask::other\nsee oth");
        out.write(b"er\n::error::bad other\n  ::set-output name=x::1\nnot a ::command\npartial");
        out.finish();
        let text: String = rec
            .output
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, _, t)| t.clone())
            .collect();
        assert_eq!(text, "hello ***\nsee ***\nnot a ::command\npartial\n");
        assert_eq!(out.errors, 1);
        assert_eq!(out.outputs.get("x").map(String::as_str), Some("1"));
        let notices = rec.notices.lock().expect("lock").clone();
        assert!(
            notices.iter().any(|n| n.contains("Error: bad ***")),
            "{notices:?}"
        );
    }

    #[test]
    fn plain_chunks_and_commands_split_across_chunks() {
        let rec = Arc::new(Recorder::default());
        let masker = Masker::new();
        let job = JobRef {
            id: "j".into(),
            name: "j".into(),
            matrix: None,
            key: "j".into(),
        };
        let t = tempfile::tempdir().expect("tmp");
        let log = t.path().join("logs/0.log");
        let mut out = StepOutput::new(job, 0, rec.clone(), masker, Some(log.clone()), false);
        // Plain chunks (the fast path), then a command whose `::` straddles two chunks, then a
        // mask registered by a command that later plain chunks must honour.
        out.write(b"one\ntwo\nthr");
        out.write(b"ee\n:");
        out.write(b":error::broken\nfour\n");
        out.write(b"::add-mask::hush\n");
        out.write(b"a hush b\n");
        out.write(b"tail");
        out.finish();
        let text: String = rec
            .output
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, _, t)| t.clone())
            .collect();
        assert_eq!(text, "one\ntwo\nthree\nfour\na *** b\ntail\n");
        assert_eq!(out.errors, 1);
        let logged = std::fs::read_to_string(&log).expect("log");
        assert_eq!(
            logged,
            "one\ntwo\nthree\nError: broken\nfour\na *** b\ntail\n"
        );
    }
}
