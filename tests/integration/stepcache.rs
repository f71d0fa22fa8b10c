//! The step cache (pipe's `cache:` key) end to end through the real binary: exactly the
//! dependent steps re-run after an edit, hits replay logs, outputs, env files and restored
//! files, failures and secrets are never stored, corrupt entries are misses, `pipe why`
//! explains misses, and a remote cache (real nginx WebDAV) shares results between machines.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(workflow: &str) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("repo");
        std::fs::create_dir_all(root.join("src")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("counts")).expect("mkdir");
        std::fs::write(root.join("wf.yml"), workflow).expect("write");
        std::fs::write(root.join("src/a.txt"), "alpha\n").expect("write");
        std::fs::write(root.join("src/b.txt"), "beta\n").expect("write");
        let ok = Command::new("git")
            .args(["init", "-q"])
            .current_dir(&root)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "git init");
        Project { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// Runs the workflow; returns (exit code, summary, stderr).
    fn run(&self, extra_env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, Value, String) {
        self.run_with_cache(&self.cache_dir(), extra_env, args)
    }

    fn run_with_cache(
        &self,
        cache: &Path,
        extra_env: &[(&str, &str)],
        args: &[&str],
    ) -> (Option<i32>, Value, String) {
        let summary = self.dir.path().join("summary.json");
        let _ = std::fs::remove_file(&summary);
        let mut c = self.cmd(cache);
        c.args(["run", "-W", "wf.yml", "--progress", "plain", "-p", "1"])
            .arg("--summary")
            .arg(&summary)
            .args(args);
        for (k, v) in extra_env {
            c.env(k, v);
        }
        let out = c.output().expect("run pipe");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        let text = std::fs::read_to_string(&summary).unwrap_or_else(|_| "null".into());
        (
            out.status.code(),
            serde_json::from_str(&text).expect("summary json"),
            stderr,
        )
    }

    fn cmd(&self, cache: &Path) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pipe"));
        c.current_dir(self.root())
            .env("NO_COLOR", "1")
            .env("PIPE_CACHE_DIR", cache)
            .env("PIPE_STATE_DIR", self.dir.path().join("state"))
            .env("COUNTS", self.dir.path().join("counts"))
            .env_remove("PIPE_LOG")
            .env_remove("PIPE_CACHE_MAX_SIZE")
            .env_remove("PIPE_CACHE_MAX_AGE");
        c
    }

    fn pipe(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self
            .cmd(&self.cache_dir())
            .args(args)
            .output()
            .expect("pipe");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// How many times the step that counts under `name` really ran.
    fn count(&self, name: &str) -> usize {
        std::fs::read_to_string(self.dir.path().join("counts").join(name))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.root().join(rel), text).expect("write");
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root().join(rel)).unwrap_or_default()
    }
}

fn step<'a>(summary: &'a Value, job: usize, id: &str) -> &'a Value {
    summary["jobs"][job]["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["id"] == id))
        .unwrap_or_else(|| panic!("step `{id}` in {summary}"))
}

fn status(summary: &Value, id: &str) -> String {
    step(summary, 0, id)["cache"]["status"]
        .as_str()
        .unwrap_or("none")
        .to_owned()
}

const THREE_STEPS: &str = r##"on: push
jobs:
  build:
    runs-on: ubuntu-latest
    env:
      MODE: ${{ vars.MODE || 'debug' }}
    steps:
      - id: a
        run: |
          echo run >> "$COUNTS/a"
          mkdir -p out && tr a-z A-Z < src/a.txt > out/a.txt
          echo "upper=$(cat out/a.txt)" >> "$GITHUB_OUTPUT"
          echo "FROM_A=yes" >> "$GITHUB_ENV"
          echo "built a" >> "$GITHUB_STEP_SUMMARY"
          echo "::notice::a is built"
          echo "step a printed this"
        cache:
          inputs: [src/a.txt]
          outputs: [out/a.txt]
      - id: b
        run: |
          echo run >> "$COUNTS/b"
          mkdir -p out && cat src/b.txt > out/b.txt && echo "$FLAVOUR" >> out/b.txt
        cache:
          inputs: [src/b.txt]
          env: [FLAVOUR]
          outputs: [out/b.txt]
      - id: c
        run: |
          echo run >> "$COUNTS/c"
          echo "mode=$MODE" > out/c.txt
        cache:
          outputs: [out/c.txt]
      - id: check
        run: |
          echo "upper=${{ steps.a.outputs.upper }} from_a=$FROM_A"
          cat out/a.txt out/b.txt out/c.txt
"##;

#[test]
fn edits_rerun_exactly_the_dependent_steps() {
    let p = Project::new(THREE_STEPS);
    let (code, s, err) = p.run(&[("FLAVOUR", "vanilla")], &[]);
    assert_eq!(code, Some(0), "{err}");
    for id in ["a", "b", "c"] {
        assert_eq!(status(&s, id), "miss");
        assert_eq!(step(&s, 0, id)["cache"]["saved"], true, "{s}");
    }
    assert_eq!(status(&s, "check"), "none");
    assert_eq!((p.count("a"), p.count("b"), p.count("c")), (1, 1, 1));

    // Nothing changed: every cached step is a hit, and the outputs come back.
    std::fs::remove_dir_all(p.root().join("out")).expect("rm out");
    let (code, s, err) = p.run(&[("FLAVOUR", "vanilla")], &[]);
    assert_eq!(code, Some(0), "{err}");
    for id in ["a", "b", "c"] {
        assert_eq!(status(&s, id), "hit", "{s}");
    }
    assert_eq!((p.count("a"), p.count("b"), p.count("c")), (1, 1, 1));
    assert_eq!(p.read("out/a.txt"), "ALPHA\n");
    assert_eq!(p.read("out/b.txt"), "beta\nvanilla\n");
    // Step outputs, GITHUB_ENV and the log are replayed for later steps and the reader.
    assert_eq!(step(&s, 0, "a")["outputs"]["upper"], "ALPHA", "{s}");
    assert!(err.contains("upper=ALPHA from_a=yes"), "{err}");
    assert!(err.contains("step a printed this"), "{err}");
    assert!(err.contains("a is built"), "{err}");
    assert!(err.contains("cache hit: "), "{err}");

    // One input file: a dry run predicts that only `a` would run, and runs nothing.
    p.write("src/a.txt", "gamma\n");
    let (code, s, err) = p.run(&[("FLAVOUR", "vanilla")], &["--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        [status(&s, "a"), status(&s, "b"), status(&s, "c")],
        ["miss", "hit", "hit"]
    );
    assert_eq!((p.count("a"), p.count("b"), p.count("c")), (1, 1, 1));
    assert_eq!(p.read("out/a.txt"), "ALPHA\n");
    // The real run.
    let (_, s, _) = p.run(&[("FLAVOUR", "vanilla")], &[]);
    assert_eq!(
        [status(&s, "a"), status(&s, "b"), status(&s, "c")],
        ["miss", "hit", "hit"]
    );
    assert_eq!(p.read("out/a.txt"), "GAMMA\n");
    let changes = &step(&s, 0, "a")["cache"]["changes"];
    assert_eq!(changes[0], "input file `src/a.txt` changed", "{s}");

    // One declared env value: only `b`.
    let (_, s, _) = p.run(&[("FLAVOUR", "chocolate")], &[]);
    assert_eq!(
        [status(&s, "a"), status(&s, "b"), status(&s, "c")],
        ["hit", "miss", "hit"]
    );
    assert_eq!(p.read("out/b.txt"), "beta\nchocolate\n");
    assert_eq!(
        step(&s, 0, "b")["cache"]["changes"][0],
        "env `FLAVOUR` changed"
    );

    // The job env is part of every step's definition: a new value misses.
    let (_, s, _) = p.run(&[("FLAVOUR", "chocolate")], &["--var", "MODE=release"]);
    assert_eq!(status(&s, "c"), "miss");
    assert_eq!(p.read("out/c.txt"), "mode=release\n");

    // The step text: only the edited step.
    let edited = THREE_STEPS.replace("echo \"mode=$MODE\"", "echo \"mode=$MODE!\"");
    p.write("wf.yml", &edited);
    let (_, s, _) = p.run(&[("FLAVOUR", "chocolate")], &["--var", "MODE=release"]);
    assert_eq!(
        [status(&s, "a"), status(&s, "b"), status(&s, "c")],
        ["hit", "hit", "miss"]
    );
    assert_eq!(p.read("out/c.txt"), "mode=release!\n");
    assert!(
        step(&s, 0, "c")["cache"]["changes"][0]
            .as_str()
            .is_some_and(|c| c.contains("definition")),
        "{s}"
    );

    // `pipe why` explains the last verdicts.
    let (code, out, err) = p.pipe(&["why", "build/c"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("miss"), "{out}");
    assert!(out.contains("the step's definition"), "{out}");
    let (code, out, _) = p.pipe(&["why", "build/a"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("hit from the local cache"), "{out}");
    let (code, _, err) = p.pipe(&["why", "nope"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no recorded run has cached steps in `nope`"),
        "{err}"
    );

    // `--no-cache` runs everything and stores nothing new.
    let before = p.count("a");
    let (_, s, _) = p.run(
        &[("FLAVOUR", "chocolate")],
        &["--var", "MODE=release", "--no-cache"],
    );
    assert_eq!(status(&s, "a"), "none");
    assert_eq!(p.count("a"), before + 1);
}

#[test]
fn failures_and_secrets_are_never_stored() {
    let p = Project::new(
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - id: flaky
        continue-on-error: true
        run: |
          echo run >> "$COUNTS/flaky"
          exit 3
        cache: true
      - id: leaky
        run: |
          echo run >> "$COUNTS/leaky"
          echo "token is ${{ secrets.TOKEN }}"
        cache: true
      - id: fine
        run: echo run >> "$COUNTS/fine"
        cache: true
"#,
    );
    for round in 1..=2 {
        let (code, s, err) = p.run(&[], &["-s", "TOKEN=hunter2"]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(status(&s, "flaky"), "miss");
        assert_eq!(
            step(&s, 0, "flaky")["cache"]["note"],
            "failed steps are not cached"
        );
        assert_eq!(status(&s, "leaky"), "miss");
        assert!(
            step(&s, 0, "leaky")["cache"]["note"]
                .as_str()
                .is_some_and(|n| n.contains("secret")),
            "{s}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        assert_eq!(p.count("flaky"), round);
        assert_eq!(p.count("leaky"), round);
        assert_eq!(p.count("fine"), 1);
    }
    // The secret never reached the store.
    let mut stack = vec![p.cache_dir()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                assert!(
                    !bytes.windows(7).any(|w| w == b"hunter2"),
                    "secret in {}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn a_corrupt_entry_is_a_miss_with_a_warning_never_a_wrong_result() {
    let p = Project::new(
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - id: big
        run: |
          echo run >> "$COUNTS/big"
          mkdir -p out && head -c 100000 /dev/zero | tr '\0' 'x' > out/big.txt
        cache:
          inputs: [src/**]
          outputs: [out]
"#,
    );
    let (code, _, err) = p.run(&[], &[]);
    assert_eq!(code, Some(0), "{err}");
    // Flip bytes in every CAS blob (the 100 kB output is not inlined).
    let mut flipped = 0;
    let mut stack = vec![p.cache_dir()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::metadata(&path).is_ok_and(|m| m.len() == 100_000) {
                let mut perms = std::fs::metadata(&path).expect("meta").permissions();
                #[allow(clippy::permissions_set_readonly_false)]
                perms.set_readonly(false);
                std::fs::set_permissions(&path, perms).expect("chmod");
                std::fs::write(&path, vec![b'y'; 100_000]).expect("corrupt");
                flipped += 1;
            }
        }
    }
    assert!(flipped >= 1, "no blob found to corrupt");
    std::fs::remove_dir_all(p.root().join("out")).expect("rm");
    let (code, s, err) = p.run(&[], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(status(&s, "big"), "miss", "{s}\n{err}");
    assert!(err.contains("warning"), "{err}");
    assert_eq!(p.count("big"), 2);
    assert_eq!(p.read("out/big.txt"), "x".repeat(100_000));
    // And the fresh result is a good entry again.
    let (_, s, _) = p.run(&[], &[]);
    assert_eq!(status(&s, "big"), "hit");
    assert_eq!(p.read("out/big.txt"), "x".repeat(100_000));
}

#[test]
fn random_edit_sequences_never_restore_stale_outputs() {
    // A deterministic pseudo-random walk over edits (input files, env, nothing); after every
    // run the output must equal what a fresh run computes from the current inputs.
    let p = Project::new(
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - id: s
        run: |
          mkdir -p out && cat src/a.txt src/b.txt > out/r.txt && echo "$SALT" >> out/r.txt
        cache:
          inputs: [src/*.txt]
          env: [SALT]
          outputs: [out/r.txt]
"#,
    );
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut a, mut b, mut salt) = ("alpha".to_owned(), "beta".to_owned(), "0".to_owned());
    p.write("src/a.txt", &format!("{a}\n"));
    p.write("src/b.txt", &format!("{b}\n"));
    let mut hits = 0;
    for i in 0..24 {
        match next() % 5 {
            0 => a = format!("a{}", next() % 3),
            1 => b = format!("b{}", next() % 3),
            2 => salt = format!("{}", next() % 3),
            3 => {
                let _ = std::fs::remove_dir_all(p.root().join("out"));
            }
            _ => {}
        }
        p.write("src/a.txt", &format!("{a}\n"));
        p.write("src/b.txt", &format!("{b}\n"));
        let (code, s, err) = p.run(&[("SALT", &salt)], &[]);
        assert_eq!(code, Some(0), "{err}");
        if status(&s, "s") == "hit" {
            hits += 1;
        }
        assert_eq!(
            p.read("out/r.txt"),
            format!("{a}\n{b}\n{salt}\n"),
            "round {i}: stale output after {}",
            status(&s, "s")
        );
    }
    assert!(hits > 0, "the walk never hit the cache");
}

#[test]
fn a_remote_cache_shares_results_between_machines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = super::cache::start_nginx(&dir.path().join("nginx"));
    if !super::cache::require("nginx (apt: nginx-light)", server.is_some()) {
        return;
    }
    let Some(server) = server else { return };
    let url = format!("http://127.0.0.1:{}/cache", server.port);
    let p = Project::new(
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - id: s
        run: |
          echo run >> "$COUNTS/s"
          mkdir -p out && head -c 50000 /dev/zero | tr '\0' 'z' > out/z.txt
        cache:
          inputs: [src/**]
          outputs: [out]
"#,
    );
    let token = [("PIPE_CACHE_TOKEN", "s3cret")];
    // Machine 1 (its own local store) writes through to the remote.
    let m1 = dir.path().join("m1");
    let (code, s, err) = p.run_with_cache(&m1, &token, &["--cache-remote", &url]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(status(&s, "s"), "miss");
    // Machine 2 (an empty local store) hits from the remote, read-only.
    std::fs::remove_dir_all(p.root().join("out")).expect("rm");
    let m2 = dir.path().join("m2");
    let (code, s, err) =
        p.run_with_cache(&m2, &token, &["--cache-remote", &url, "--cache-read-only"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(status(&s, "s"), "hit", "{s}\n{err}");
    assert_eq!(step(&s, 0, "s")["cache"]["source"], "remote");
    assert_eq!(p.read("out/z.txt"), "z".repeat(50_000));
    assert_eq!(p.count("s"), 1);
    // A remote that is down (nothing listens on port 1) costs a warning, not the run.
    let m3 = dir.path().join("m3");
    let (code, s, err) =
        p.run_with_cache(&m3, &token, &["--cache-remote", "http://127.0.0.1:1/cache"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(status(&s, "s"), "miss");
    assert!(err.contains("warning"), "{err}");
    assert_eq!(p.count("s"), 2);
}

#[test]
fn validate_reports_bad_cache_settings() {
    let p = Project::new(
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    cache: [src]
    steps:
      - run: echo hi
        cache:
          input: [src/**]
          outputs: [../escape]
      - uses: actions/checkout@v4
        cache: true
"#,
    );
    let (code, out, err) = p.pipe(&["validate", "wf.yml"]);
    assert_eq!(code, Some(1), "{out}{err}");
    let all = format!("{out}{err}");
    assert!(all.contains("wf.yml:5:12"), "{all}");
    assert!(
        all.contains("`cache` must be a boolean or a mapping, not a sequence"),
        "{all}"
    );
    assert!(all.contains("unexpected key `input` in `cache`"), "{all}");
    assert!(all.contains("did you mean `inputs`?"), "{all}");
    assert!(all.contains("invalid output path `../escape`"), "{all}");
    assert!(
        all.contains("`cache` has no effect on a `uses:` step"),
        "{all}"
    );
}

#[test]
fn a_bad_store_limit_in_the_config_runs_steps_uncached_with_a_warning() {
    let p = Project::new(
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - id: s
        run: echo run >> "$COUNTS/s"
        cache: true
"#,
    );
    std::fs::create_dir_all(p.root().join(".pipe")).expect("mkdir");
    std::fs::write(
        p.root().join(".pipe/config.toml"),
        "[cache]\nmax-size = \"lots\"\n",
    )
    .expect("write");
    let (code, s, err) = p.run(&[], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(status(&s, "s"), "none");
    assert!(
        err.contains(
            "steps run uncached: `.pipe/config.toml` `[cache] max-size = lots` is not a size"
        ),
        "{err}"
    );
    std::fs::write(
        p.root().join(".pipe/config.toml"),
        "[cache]\nmax-size = \"1G\"\nmax-age = \"30d\"\n",
    )
    .expect("write");
    let (_, s, _) = p.run(&[], &[]);
    assert_eq!(status(&s, "s"), "miss");
    let (_, s, _) = p.run(&[], &[]);
    assert_eq!(status(&s, "s"), "hit");
}

#[test]
fn a_dry_run_runs_no_action_either() {
    let p = Project::new(
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/upload-artifact@v4
        with:
          name: a
          path: src
      - uses: pipe/echo@v1
        with:
          message: dry-run-should-not-print-this
      - run: echo run >> "$COUNTS/r"
"#,
    );
    let (code, s, err) = p.run(&[], &["--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("dry-run-should-not-print-this"), "{err}");
    assert_eq!(p.count("r"), 0);
    let steps = s["jobs"][0]["steps"].as_array().expect("steps");
    assert!(steps.iter().all(|x| x["outcome"] == "success"), "{s}");
    let (code, out, _) = p.pipe(&["artifacts"]);
    assert!(
        code != Some(0) || !out.contains(" a "),
        "a dry run uploaded an artifact: {out}"
    );
}
