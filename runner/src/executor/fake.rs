//! A fake executor for fast scheduler and job-runner tests: no processes, a tiny script
//! language, real timing and cancellation.
//!
//! Script lines (one command each, blank lines ignored):
//! - `echo TEXT` prints TEXT (`$NAME` expands from the step env);
//! - `append VAR TEXT` appends `TEXT\n` to the file whose path is in env `VAR` (e.g.
//!   `append GITHUB_OUTPUT x=1`);
//! - `sleep MS` waits MS milliseconds (cancellable);
//! - `hang` waits until cancelled or timed out;
//! - `exit N` ends the step with code N;
//! - `fail-start MESSAGE` makes the step fail to start.
//!
//! Anything else is an error line and exit code 127, like a shell's "command not found".

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    Cancel, ExecError, Executor, JobHandle, JobPaths, JobSetup, OutputSink, StepCommand, StepExit,
};

/// Records what ran, for assertions.
#[derive(Clone, Debug, Default)]
pub struct FakeLog {
    inner: Arc<Mutex<Vec<String>>>,
}

impl FakeLog {
    /// Entries `prepare <key>`, `run <key> <first script line>`, `cleanup <key>` in order.
    pub fn entries(&self) -> Vec<String> {
        self.inner.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn push(&self, s: String) {
        if let Ok(mut v) = self.inner.lock() {
            v.push(s);
        }
    }
}

/// The fake executor.
#[derive(Clone, Debug, Default)]
pub struct FakeExecutor {
    /// What ran.
    pub log: FakeLog,
}

#[async_trait]
impl Executor for FakeExecutor {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn prepare(&self, setup: &JobSetup) -> Result<Box<dyn JobHandle>, ExecError> {
        let temp = setup.run_temp.join(&setup.key);
        std::fs::create_dir_all(&temp)
            .map_err(|e| ExecError::io(format!("cannot create `{}`", temp.display()), e))?;
        self.log.push(format!("prepare {}", setup.key));
        Ok(Box::new(FakeJob {
            key: setup.key.clone(),
            paths: JobPaths {
                temp_host: temp.clone(),
                temp_exec: temp,
                workspace_exec: setup.workspace.clone(),
                os: "Linux",
                arch: "X64",
                has_bash: None,
                path: None,
                services: Vec::new(),
                container: None,
            },
            log: self.log.clone(),
        }))
    }
}

struct FakeJob {
    key: String,
    paths: JobPaths,
    log: FakeLog,
}

fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..len];
        if name.is_empty() {
            out.push('$');
        } else if let Some((_, v)) = env.iter().rev().find(|(k, _)| k == name) {
            out.push_str(v);
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

#[async_trait]
impl JobHandle for FakeJob {
    fn paths(&self) -> &JobPaths {
        &self.paths
    }

    async fn run(
        &mut self,
        step: &StepCommand,
        sink: &mut dyn OutputSink,
        cancel: &Cancel,
    ) -> Result<StepExit, ExecError> {
        let first = step.script.lines().next().unwrap_or("").to_owned();
        let env = step.full_env();
        self.log.push(format!("run {} {first}", self.key));
        let deadline = step.timeout.map(|t| tokio::time::Instant::now() + t);
        let wait = |d: Duration| async move {
            let until = match deadline {
                Some(dl) => dl.min(tokio::time::Instant::now() + d),
                None => tokio::time::Instant::now() + d,
            };
            tokio::select! {
                () = tokio::time::sleep_until(until) => {
                    if deadline.is_some_and(|dl| tokio::time::Instant::now() >= dl) {
                        Some(StepExit::TimedOut)
                    } else {
                        None
                    }
                }
                () = cancel.soft.cancelled() => Some(StepExit::Cancelled),
                () = cancel.hard.cancelled() => Some(StepExit::Cancelled),
            }
        };
        for line in step.script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if cancel.soft.is_cancelled() || cancel.hard.is_cancelled() {
                return Ok(StepExit::Cancelled);
            }
            let (cmd, arg) = line.split_once(' ').unwrap_or((line, ""));
            match cmd {
                "echo" => {
                    let mut text = expand(arg, &env);
                    text.push('\n');
                    sink.write(text.as_bytes());
                }
                "append" => {
                    let (var, text) = arg.split_once(' ').unwrap_or((arg, ""));
                    let Some((_, path)) = env.iter().rev().find(|(k, _)| k == var) else {
                        sink.write(format!("append: `{var}` is not set\n").as_bytes());
                        return Ok(StepExit::Exited(1));
                    };
                    let path = PathBuf::from(path);
                    let mut content = std::fs::read(&path).unwrap_or_default();
                    content.extend_from_slice(expand(text, &env).as_bytes());
                    content.push(b'\n');
                    std::fs::write(&path, content).map_err(|e| {
                        ExecError::io(format!("cannot write `{}`", path.display()), e)
                    })?;
                }
                "sleep" => {
                    let ms: u64 = arg.trim().parse().unwrap_or(0);
                    if let Some(exit) = wait(Duration::from_millis(ms)).await {
                        return Ok(exit);
                    }
                }
                "hang" => {
                    if let Some(exit) = wait(Duration::from_secs(365 * 24 * 3600)).await {
                        return Ok(exit);
                    }
                }
                "exit" => return Ok(StepExit::Exited(arg.trim().parse().unwrap_or(1))),
                "fail-start" => return Ok(StepExit::StartFailed(arg.to_owned())),
                other => {
                    sink.write(format!("fake: {other}: command not found\n").as_bytes());
                    return Ok(StepExit::Exited(127));
                }
            }
        }
        Ok(StepExit::Exited(0))
    }

    async fn cleanup(&mut self) -> Result<(), ExecError> {
        self.log.push(format!("cleanup {}", self.key));
        let _ = std::fs::remove_dir_all(&self.paths.temp_host);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::ShellTemplate;
    use super::*;

    #[tokio::test]
    async fn interprets_the_script() {
        let t = tempfile::tempdir().expect("tmp");
        let ex = FakeExecutor::default();
        let mut j = ex
            .prepare(&JobSetup {
                key: "k".into(),
                run_temp: t.path().to_path_buf(),
                workspace: t.path().to_path_buf(),
                ..Default::default()
            })
            .await
            .expect("prepare");
        let out_file = t.path().join("out");
        let step = StepCommand {
            script: "echo hello $WHO\nappend OUT a=1\nexit 4\necho unreachable".into(),
            shell: ShellTemplate {
                argv: vec![],
                ext: "",
            },
            env: vec![
                ("WHO".into(), "you".into()),
                ("OUT".into(), out_file.to_string_lossy().into_owned()),
            ],
            run_env: Arc::default(),
            cwd: t.path().to_path_buf(),
            timeout: None,
            action: None,
        };
        let mut out = Vec::new();
        let exit = j
            .run(&step, &mut out, &Cancel::default())
            .await
            .expect("run");
        assert_eq!(exit, StepExit::Exited(4));
        assert_eq!(out, b"hello you\n");
        assert_eq!(std::fs::read_to_string(&out_file).expect("read"), "a=1\n");
        let mut timed = step.clone();
        timed.script = "hang".into();
        timed.timeout = Some(Duration::from_millis(20));
        assert_eq!(
            j.run(&timed, &mut out, &Cancel::default())
                .await
                .expect("run"),
            StepExit::TimedOut
        );
        j.cleanup().await.expect("cleanup");
        assert_eq!(
            ex.log.entries(),
            vec![
                "prepare k",
                "run k echo hello $WHO",
                "run k hang",
                "cleanup k"
            ]
        );
    }
}
