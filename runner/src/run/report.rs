//! The one interface from the running workflow to everything that observes it: the terminal
//! reporter, `--json`, the store and the summary all implement [`Reporter`].
//!
//! Calls are synchronous on purpose (nextest's reporter design): if the terminal backs up, the
//! steps producing output wait, instead of output piling up in memory.

use std::sync::Arc;

use crate::event::{JobRef, RunEvent};
use crate::run::commands::Annotation;

/// A message from the runner itself (not from a step's output).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeLevel {
    /// Debug detail (`::debug::`, shown with `-v`).
    Debug,
    /// Information.
    Info,
    /// A warning.
    Warning,
    /// An error.
    Error,
}

/// Observes a run.
pub trait Reporter: Send + Sync {
    /// A lifecycle event.
    fn event(&self, event: &RunEvent);
    /// Complete, masked output lines of a step (each ends with `\n`).
    fn output(&self, job: &JobRef, step: usize, lines: &[u8]);
    /// `::group::` started (`Some(title)`) or ended (`None`) in a step's output.
    fn group(&self, job: &JobRef, step: usize, title: Option<&str>) {
        let _ = (job, step, title);
    }
    /// An annotation (`::error::`, `::warning::`, `::notice::`) or a failed step's message.
    fn annotation(&self, job: &JobRef, step: Option<usize>, annotation: &Annotation);
    /// A message from the runner.
    fn notice(&self, job: Option<&JobRef>, level: NoticeLevel, message: &str);
}

/// Sends everything to several reporters.
#[derive(Clone, Default)]
pub struct Fanout(pub Vec<Arc<dyn Reporter>>);

impl Reporter for Fanout {
    fn event(&self, event: &RunEvent) {
        self.0.iter().for_each(|r| r.event(event));
    }
    fn output(&self, job: &JobRef, step: usize, lines: &[u8]) {
        self.0.iter().for_each(|r| r.output(job, step, lines));
    }
    fn group(&self, job: &JobRef, step: usize, title: Option<&str>) {
        self.0.iter().for_each(|r| r.group(job, step, title));
    }
    fn annotation(&self, job: &JobRef, step: Option<usize>, annotation: &Annotation) {
        self.0
            .iter()
            .for_each(|r| r.annotation(job, step, annotation));
    }
    fn notice(&self, job: Option<&JobRef>, level: NoticeLevel, message: &str) {
        self.0.iter().for_each(|r| r.notice(job, level, message));
    }
}

/// Records everything in memory (tests).
#[derive(Default)]
pub struct Recorder {
    /// Events in order.
    pub events: std::sync::Mutex<Vec<RunEvent>>,
    /// Output per (job name, step).
    pub output: std::sync::Mutex<Vec<(String, usize, String)>>,
    /// Notices.
    pub notices: std::sync::Mutex<Vec<String>>,
}

impl Reporter for Recorder {
    fn event(&self, event: &RunEvent) {
        if let Ok(mut e) = self.events.lock() {
            e.push(event.clone());
        }
    }
    fn output(&self, job: &JobRef, step: usize, lines: &[u8]) {
        if let Ok(mut o) = self.output.lock() {
            o.push((
                job.name.clone(),
                step,
                String::from_utf8_lossy(lines).into_owned(),
            ));
        }
    }
    fn annotation(&self, job: &JobRef, _step: Option<usize>, a: &Annotation) {
        if let Ok(mut n) = self.notices.lock() {
            n.push(format!("{}: {:?}: {}", job.name, a.level, a.message));
        }
    }
    fn notice(&self, _job: Option<&JobRef>, level: NoticeLevel, message: &str) {
        if let Ok(mut n) = self.notices.lock() {
            n.push(format!("{level:?}: {message}"));
        }
    }
}
