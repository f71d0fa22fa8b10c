//! Deploys one build with a configuration file, the way `pipe promote` does (for benchmarks
//! and demos that need releases without a promotion policy).
//!
//! `cargo run -p pipe-deploy --example seed -- STATE_DIR PROJECT_ROOT ENV CONFIG.yaml ALIAS`

use pipe_deploy::Cancel;
use pipe_deploy::engine::{Context, DeployRequest, deploy};
use pipe_deploy::release::{BuildRef, Subject};
use pipe_deploy::spec::EnvDeploy;
use sha2::Digest as _;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [state, root, env, config, alias] = args.as_slice() else {
        eprintln!("usage: seed STATE_DIR PROJECT_ROOT ENV CONFIG.yaml ALIAS");
        return std::process::ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: `{config}`: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let config: EnvDeploy = match serde_saphyr::from_str(&text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: `{config}`: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let digest = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(alias.as_bytes()))
    );
    let ctx = Context {
        state_dir: state.into(),
        project_root: root.into(),
        actor: "seed".into(),
        cancel: Cancel::new(),
    };
    let req = DeployRequest {
        env: env.clone(),
        build: BuildRef {
            id: digest.clone(),
            alias: Some(alias.clone()),
            subjects: vec![Subject {
                name: "app".into(),
                digest,
                uri: None,
            }],
        },
        config,
        reason: Some("seed".into()),
    };
    match deploy(&ctx, &req, &mut |e| eprintln!("{}", e.ledger_kind())) {
        Ok(o) => {
            eprintln!("{:?}", o.result);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
