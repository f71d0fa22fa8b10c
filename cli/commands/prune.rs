//! `pipe prune`: removes the containers, networks and volumes that a killed `pipe` left behind
//! (everything labelled `dev.pipe.managed` whose `pipe` process is gone).

use pipe_runner::executor::docker::{self, Engine};
use pipe_runner::exit;

use super::error;
use crate::args::{Cli, PruneArgs};
use crate::output;

/// Runs the command and returns its exit code.
pub fn run(cli: &Cli, args: &PruneArgs) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error(cli, &format!("cannot start the async runtime: {e}"), None);
            return exit::INFRA;
        }
    };
    runtime.block_on(async {
        let engine = match Engine::connect().await {
            Ok(e) => e,
            Err(e) => {
                error(cli, &e.to_string(), None);
                return exit::INFRA;
            }
        };
        // A request a killed `pipe` had in flight (a create) can still complete inside the
        // engine just after it died: when the first sweep found something, look once more.
        let swept = match docker::prune(&engine, args.all).await {
            Ok(first) if first.containers + first.networks + first.volumes > 0 => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                docker::prune(&engine, args.all)
                    .await
                    .map(|again| docker::Swept {
                        containers: first.containers + again.containers,
                        networks: first.networks + again.networks,
                        volumes: first.volumes + again.volumes,
                    })
            }
            other => other,
        };
        match swept {
            Ok(s) => {
                if !cli.globals.quiet {
                    output::stderr_write(
                        format!(
                            "removed {} {}, {} {} and {} {}\n",
                            s.containers,
                            plural(s.containers, "container", "containers"),
                            s.networks,
                            plural(s.networks, "network", "networks"),
                            s.volumes,
                            plural(s.volumes, "volume", "volumes"),
                        )
                        .as_bytes(),
                    );
                }
                exit::SUCCESS
            }
            Err(e) => {
                error(cli, &e.to_string(), None);
                exit::INFRA
            }
        }
    })
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}
