//! `pipe server`: serves the job queue API on PostgreSQL; `pipe server migrate` applies the
//! schema; `pipe server token` creates agent and user tokens (printed once, stored hashed).

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use pipe_runner::exit;
use pipe_server::db::{Db, TokenKind};
use pipe_server::http::Settings;

use crate::args::Cli;
use crate::output;

/// `pipe server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The PostgreSQL database (`postgres://user@host:port/db`).
    #[arg(long, env = "PIPE_DATABASE_URL", value_name = "URL", global = true)]
    pub database: Option<String>,
    /// Address to listen on (port 0 picks a free port; the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: String,
    /// A job's lease: how long it stays with an agent that stopped heartbeating.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub lease_ms: u64,
    /// Requests per second per client address on the public endpoints (0: unlimited).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub rate_limit: u32,
    /// The shared secret of `POST /api/v1/webhooks/github` (unset: webhooks are off).
    #[arg(
        long,
        env = "PIPE_WEBHOOK_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub webhook_secret: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM; with `--tls-key`).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// The repository whose promotions the web UI shows and approves (its ledger in the
    /// state folder, its policy at the trusted ref), as `pipe promote` run there finds them.
    #[arg(long, env = "PIPE_PROMOTION_REPO", value_name = "DIR")]
    pub promotion_repo: Option<std::path::PathBuf>,
    /// Database connections per server.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub pool_size: usize,
    #[command(subcommand)]
    pub action: Option<ServerAction>,
}

/// `pipe server …` subcommands.
#[derive(Debug, Subcommand)]
pub enum ServerAction {
    /// Apply the schema migrations the database lacks, then exit.
    Migrate,
    /// Create a token and print it (it cannot be shown again).
    Token {
        /// What the token may do.
        #[arg(long, value_enum)]
        kind: Kind,
        /// Who or what holds it.
        #[arg(long, value_name = "NAME")]
        name: String,
    },
}

/// Token kinds.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    /// Claims and runs jobs (`pipe agent`).
    Agent,
    /// Submits and reads runs (`pipe submit`).
    User,
}

/// Runs the command.
pub fn run(cli: &Cli, args: &ServerArgs) -> u8 {
    let Some(url) = &args.database else {
        super::error(
            cli,
            "no database given",
            Some("pass `--database postgres://USER@HOST:PORT/DB` or set `PIPE_DATABASE_URL`"),
        );
        return exit::USAGE;
    };
    let db = match Db::connect(url, args.pool_size) {
        Ok(db) => db,
        Err(e) => {
            super::error(cli, &format!("`--database`: {e}"), None);
            return exit::USAGE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            super::error(cli, &format!("cannot start the runtime: {e}"), None);
            return exit::INFRA;
        }
    };
    runtime.block_on(async {
        let migrated = match db.migrate().await {
            Ok(v) => v,
            Err(e) => {
                super::error(cli, &format!("cannot migrate the database: {e}"), None);
                return exit::INFRA;
            }
        };
        match &args.action {
            Some(ServerAction::Migrate) => {
                let text = if migrated.is_empty() {
                    "the database is up to date\n".to_owned()
                } else {
                    migrated
                        .iter()
                        .map(|v| format!("applied migration {v}\n"))
                        .collect()
                };
                output::stderr_write(text.as_bytes());
                exit::SUCCESS
            }
            Some(ServerAction::Token { kind, name }) => {
                let kind = match kind {
                    Kind::Agent => TokenKind::Agent,
                    Kind::User => TokenKind::User,
                };
                match db.create_token(kind, name).await {
                    Ok(t) => {
                        let _ = output::stdout_write(format!("{t}\n").as_bytes());
                        exit::SUCCESS
                    }
                    Err(e) => {
                        super::error(cli, &format!("cannot create the token: {e}"), None);
                        exit::INFRA
                    }
                }
            }
            None => serve(cli, args, db).await,
        }
    })
}

async fn serve(cli: &Cli, args: &ServerArgs, db: Db) -> u8 {
    let tls = args.tls_cert.clone().zip(args.tls_key.clone());
    if let Some((cert, key)) = &tls
        && let Err(e) = pipe_server::http::tls_acceptor(cert, key)
    {
        super::error(cli, &e, None);
        return exit::USAGE;
    }
    let promotion = match &args.promotion_repo {
        Some(dir) => match pipe_server::web::promote::Promotion::of_repo(dir) {
            Ok(p) => Some(p),
            Err(e) => {
                super::error(
                    cli,
                    &format!("`--promotion-repo`: {e}"),
                    Some("give the repository `pipe promote` runs in"),
                );
                return exit::USAGE;
            }
        },
        None => None,
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            super::error(
                cli,
                &format!("cannot listen on `{}`: {e}", args.listen),
                None,
            );
            return exit::INFRA;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| args.listen.clone());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let _ = output::stdout_write(format!("listening on {scheme}://{addr}\n").as_bytes());
    let settings = Settings {
        lease: Duration::from_millis(args.lease_ms.max(100)),
        rate_limit: args.rate_limit,
        webhook_secret: args.webhook_secret.clone(),
        git_cache: pipe_runner::dirs::state_root(&pipe_runner::dirs::process_env)
            .map(|d| d.join("server-git"))
            .unwrap_or_else(|_| std::env::temp_dir().join("pipe-server-git")),
        tls,
        promotion,
        ..Settings::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        let code = tokio::select! {
            _ = term.recv() => exit::SIGTERM,
            _ = int.recv() => exit::SIGINT,
        };
        let _ = tx.send(code);
    });
    let (code_tx, mut code_rx) = tokio::sync::oneshot::channel::<u8>();
    let shutdown = async move {
        let code = rx.await.unwrap_or(exit::SUCCESS);
        let _ = code_tx.send(code);
    };
    match pipe_server::http::serve(db, settings, listener, shutdown).await {
        Ok(()) => code_rx.try_recv().unwrap_or(exit::SUCCESS),
        Err(e) => {
            super::error(cli, &format!("the server stopped: {e}"), None);
            exit::INFRA
        }
    }
}
