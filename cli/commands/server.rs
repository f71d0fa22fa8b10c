//! `pipe server`: serves the job queue API on PostgreSQL; `pipe server migrate` applies the
//! schema; `pipe server token` creates agent and user tokens (printed once, stored hashed),
//! `pipe server token list` lists them and `pipe server token revoke` revokes one;
//! `pipe server gc` removes expired artifacts, unused cache entries and unreferenced blobs
//! (the server does the same every `--gc-interval`).

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use pipe_runner::exit;
use pipe_server::db::{Db, TokenKind};
use pipe_server::http::Settings;

use crate::args::Cli;
use crate::output;

// `pipe server`.
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
    /// Where the server keeps its key (`server.key`, created 0600 on first start; it seals run
    /// secrets and signs cache grants) and its blobs (artifacts, cache). Servers sharing a
    /// database must share it. Default: `server/` in the state directory.
    #[arg(long, env = "PIPE_SERVER_DATA", value_name = "DIR", global = true)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Days an artifact is kept when its upload names no `retention-days`, and the most it
    /// may name.
    #[arg(long, default_value_t = 90, value_name = "DAYS", global = true)]
    pub artifact_retention_days: u32,
    /// Days an action-cache entry is kept after its last use.
    #[arg(long, default_value_t = 7, value_name = "DAYS", global = true)]
    pub cache_retention_days: u32,
    /// Minutes between two collections of expired and unreferenced data (0: never).
    #[arg(long, default_value_t = 60, value_name = "MINUTES")]
    pub gc_interval: u64,
    #[command(subcommand)]
    pub action: Option<ServerAction>,
}

// `pipe server …` subcommands (a plain comment: see `args::Command`).
#[derive(Debug, Subcommand)]
pub enum ServerAction {
    /// Apply the schema migrations the database lacks, then exit.
    Migrate,
    /// Remove expired artifacts, unused cache entries and blobs nothing refers to, once, and
    /// say what went.
    Gc {
        /// Keep what was stored in the last MINUTES (uploads in flight).
        #[arg(long, default_value_t = 60, value_name = "MINUTES")]
        grace: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create a token and print it (it cannot be shown again); `list` and `revoke` manage
    /// the tokens.
    #[command(args_conflicts_with_subcommands = true)]
    Token {
        /// What the token may do.
        #[arg(long, value_enum)]
        kind: Option<Kind>,
        /// Who or what holds it.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        #[command(subcommand)]
        action: Option<TokenAction>,
    },
}

/// `pipe server token …`.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// List the tokens (id, kind, name, created, revoked); never the tokens themselves.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id, or every token of a name: it authenticates nothing any more, and
    /// the jobs an agent holds with it are re-queued at once.
    Revoke {
        /// The token's id (from `pipe server token list`) or name.
        #[arg(value_name = "ID|NAME")]
        token: String,
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
            Some(ServerAction::Gc { grace, json }) => {
                let Some(data_dir) = data_dir(cli, args) else {
                    return exit::USAGE;
                };
                let policy = policy(args, Duration::from_secs(grace.saturating_mul(60)));
                let store = pipe_server::blobs::BlobStore::new(&data_dir.join("blobs"));
                match pipe_server::gc::collect(&db, &store, &policy).await {
                    Ok(report) => {
                        if *json {
                            let text = serde_json::to_string_pretty(&report).unwrap_or_default();
                            let _ = output::stdout_write(format!("{text}\n").as_bytes());
                        } else {
                            output::stderr_write(format!("{report}\n").as_bytes());
                        }
                        exit::SUCCESS
                    }
                    Err(e) => {
                        super::error(cli, &format!("garbage collection failed: {e}"), None);
                        exit::INFRA
                    }
                }
            }
            Some(ServerAction::Token {
                action: Some(action),
                ..
            }) => token_action(cli, &db, action).await,
            Some(ServerAction::Token {
                kind,
                name,
                action: None,
            }) => {
                let (Some(kind), Some(name)) = (kind, name) else {
                    super::error(
                        cli,
                        "`pipe server token` needs `--kind` and `--name`",
                        Some("e.g. `pipe server token --kind agent --name build-1`; `pipe server token list` shows the tokens"),
                    );
                    return exit::USAGE;
                };
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

async fn token_action(cli: &Cli, db: &Db, action: &TokenAction) -> u8 {
    match action {
        TokenAction::List { json } => match db.list_tokens().await {
            Ok(tokens) => {
                let text = if *json {
                    serde_json::to_string_pretty(&tokens).unwrap_or_default() + "\n"
                } else {
                    let mut t = String::from("ID\tKIND\tNAME\tCREATED\tREVOKED\n");
                    for tok in &tokens {
                        t.push_str(&format!(
                            "{}\t{}\t{}\t{}\t{}\n",
                            tok.id,
                            tok.kind,
                            tok.name,
                            tok.created,
                            tok.revoked.as_deref().unwrap_or("-")
                        ));
                    }
                    t
                };
                let _ = output::stdout_write(text.as_bytes());
                exit::SUCCESS
            }
            Err(e) => {
                super::error(cli, &format!("cannot list the tokens: {e}"), None);
                exit::INFRA
            }
        },
        TokenAction::Revoke { token } => match db.revoke_token(token).await {
            Ok(ids) if ids.is_empty() => {
                output::stderr_write(format!("`{token}` was already revoked\n").as_bytes());
                exit::SUCCESS
            }
            Ok(ids) => {
                let list: Vec<String> = ids.iter().map(i64::to_string).collect();
                output::stderr_write(
                    format!("revoked token {} (`{token}`)\n", list.join(", ")).as_bytes(),
                );
                exit::SUCCESS
            }
            Err(pipe_server::db::DbError::NotFound(_)) => {
                super::error(
                    cli,
                    &format!("no token has the id or name `{token}`"),
                    Some("`pipe server token list` shows the tokens"),
                );
                exit::USAGE
            }
            Err(e) => {
                super::error(cli, &format!("cannot revoke the token: {e}"), None);
                exit::INFRA
            }
        },
    }
}

/// The retention the flags set.
fn policy(args: &ServerArgs, grace: Duration) -> pipe_server::gc::Policy {
    pipe_server::gc::Policy {
        artifact_days: args.artifact_retention_days,
        cache_days: args.cache_retention_days,
        grace,
    }
}

/// `--data-dir`, or `server/` in the state directory (an error is reported).
fn data_dir(cli: &Cli, args: &ServerArgs) -> Option<std::path::PathBuf> {
    let dir = args.data_dir.clone().map(Ok).unwrap_or_else(|| {
        pipe_runner::dirs::state_root(&pipe_runner::dirs::process_env)
            .map(|d| d.join("server"))
            .map_err(|e| e.to_string())
    });
    match dir {
        Ok(d) => Some(d),
        Err(e) => {
            super::error(
                cli,
                &format!("no data folder for the server: {e}"),
                Some("pass `--data-dir DIR`"),
            );
            None
        }
    }
}

async fn serve(cli: &Cli, args: &ServerArgs, db: Db) -> u8 {
    let Some(data_dir) = data_dir(cli, args) else {
        return exit::USAGE;
    };
    let key = match pipe_server::secret::ServerKey::load_or_create(&data_dir.join("server.key")) {
        Ok(k) => k,
        Err(e) => {
            super::error(cli, &e, Some("`--data-dir` names the server's data folder"));
            return exit::INFRA;
        }
    };
    let db = db.with_key(key);
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
        blob_dir: data_dir.join("blobs"),
        promotion,
        gc: (args.gc_interval > 0).then(|| {
            (
                policy(args, Duration::from_secs(3600)),
                Duration::from_secs(args.gc_interval.saturating_mul(60)),
            )
        }),
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
