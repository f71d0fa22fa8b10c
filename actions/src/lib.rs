//! pipe's built-in actions (checkout, cache, artifacts, scan, bench, image, deploy).
//!
//! The runner defines the action registry; this crate fills it. `scan` (`pipe/scan@v1`, also behind `pipe scan`) is the first built-in.
//! Built-ins write their step summary to `GITHUB_STEP_SUMMARY` (in the env they are given) and
//! their evidence below `call.run_dir` (`util::append_step_summary`, `util::write_evidence`).

pub mod artifact;
pub mod bench;
pub mod cache;
pub mod checkout;
pub mod echo;
pub mod image;
pub mod reports;
pub mod scan;
pub mod util;

use std::path::PathBuf;
use std::sync::Arc;

use pipe_runner::run::action::ActionRegistry;

/// The action registry of `pipe run`: every built-in action, then the offline action folder
/// `action_dir` (`owner/repo@ref/…`). Later built-ins register here (`pipe/scan`,
/// `actions/checkout`, …) by implementing [`pipe_runner::run::action::BuiltinAction`].
pub fn registry(action_dir: Option<PathBuf>) -> ActionRegistry {
    let mut r = ActionRegistry::new().with_action_dir(action_dir);
    r.register("pipe/echo", Arc::new(echo::Echo));
    r.register("pipe/scan", Arc::new(scan::action::ScanAction));
    r.register("pipe/bench", Arc::new(bench::action::BenchAction));
    r.register("pipe/image", Arc::new(image::action::ImageAction));
    r.register("actions/checkout", Arc::new(checkout::Checkout));
    r.register(
        "actions/cache",
        Arc::new(cache::CacheAction(cache::Mode::Both)),
    );
    r.register(
        "actions/cache/restore",
        Arc::new(cache::CacheAction(cache::Mode::Restore)),
    );
    r.register("actions/upload-artifact", Arc::new(artifact::Upload));
    r.register("actions/download-artifact", Arc::new(artifact::Download));
    r.register(
        "actions/cache/save",
        Arc::new(cache::CacheAction(cache::Mode::Save)),
    );
    r
}
