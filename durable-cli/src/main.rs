//! The `durable` command line: `durable sidecar` runs a standalone Durable Task sidecar that the
//! official SDKs (Python, .NET, JS, Go) and durable's own worker and client can connect to;
//! `durable list`, `show`, `start`, `raise`, `terminate`, ... manage instances on any sidecar.

mod client_commands;
mod timeline;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use durable::sidecar::{SidecarBuilder, Synchronous};

#[derive(Parser)]
#[command(name = "durable", version, about = "Durable Task tools")]
struct Cli {
    #[command(flatten)]
    client: client_commands::ClientArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Durable Task sidecar (gRPC `TaskHubSidecarService`).
    Sidecar {
        /// TCP port to listen on (0 = pick a free one).
        #[arg(long, default_value_t = 4001)]
        port: u16,
        /// Interface to listen on; loopback by default (the protocol has no authentication).
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// SQLite database file; created if missing. Default: `durable.db` in the current directory.
        #[arg(long, conflicts_with_all = ["in_memory", "postgres"])]
        db: Option<PathBuf>,
        /// Keep everything in memory (lost on exit) instead of a database file.
        #[arg(long, conflicts_with = "postgres")]
        in_memory: bool,
        /// Keep everything in a PostgreSQL database instead
        /// (`postgres://user:password@host:port/db`); tables are created on start. Default:
        /// `DURABLE_POSTGRES` when set and neither `--db` nor `--in-memory` is given.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// `full` (default): every acknowledged step is fsynced first, so it survives a machine
        /// crash or power cut. `normal`: it survives a crash of this process but a machine crash
        /// may lose the last seconds of acknowledged work (faster on slow disks).
        #[arg(long, value_name = "MODE", default_value = "full")]
        synchronous: Synchronous,
        /// At most this many connections open at once; one beyond is closed and logged.
        /// Default: three quarters of the open-file limit (`ulimit -n`), 64 to 10,000.
        #[arg(long, value_name = "N")]
        max_connections: Option<usize>,
        /// Ping every connection this often (seconds); a peer that does not answer within
        /// twice as long is disconnected, and the work items a stopped or hung worker held go
        /// to the other workers.
        #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
        keepalive: f64,
        /// Close a connection with no work-item stream or wait open that started no call for
        /// this long (seconds); SDK clients reconnect when they next call.
        #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
        idle_timeout: f64,
        /// Require `authorization: Bearer <token>` on every gRPC call and HTTP request, with the
        /// token read from this file (surrounding whitespace ignored). Default: the value of
        /// `DURABLE_TOKEN` when set; otherwise no token is required.
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
        /// Also serve, on this port and the same host: the web dashboard (`/`: instances,
        /// their history as a timeline, and actions), the HTTP management API (`/api/`:
        /// start, status, history, events, terminate, purge, ...) and Prometheus metrics
        /// (`/metrics`).
        #[arg(long, value_name = "PORT")]
        http: Option<u16>,
        /// A host name the HTTP API answers for besides the loopback names (repeatable; `*`
        /// for any, behind a proxy that checks it). Others get 421.
        #[arg(long = "http-allow-host", value_name = "HOST")]
        http_allow_hosts: Vec<String>,
        /// With `--postgres`: the URL other replicas reach this one at, to forward calls for
        /// the instances it serves. Default: `DURABLE_ADVERTISE` when set, else this sidecar's
        /// own endpoint (loopback when listening on every interface; set it for replicas on
        /// several machines).
        #[arg(long, value_name = "URL")]
        advertise: Option<String>,
    },
    #[command(flatten)]
    Client(client_commands::ClientCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Client(command) => match client_commands::run(cli.client, command).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("durable: {message}");
                ExitCode::FAILURE
            }
        },
        Command::Sidecar {
            port,
            host,
            db,
            in_memory,
            postgres,
            synchronous,
            max_connections,
            keepalive,
            idle_timeout,
            token_file,
            http,
            http_allow_hosts,
            advertise,
        } => {
            let token = match read_token(token_file.as_deref()) {
                Ok(token) => token,
                Err(message) => {
                    eprintln!("durable sidecar: {message}");
                    return ExitCode::FAILURE;
                }
            };
            let http_host = host.clone();
            let seconds = |flag: &str, value: f64| {
                std::time::Duration::try_from_secs_f64(value).map_err(|_| {
                    eprintln!("durable sidecar: {flag} takes a positive number of seconds");
                })
            };
            let (Ok(keepalive), Ok(idle_timeout)) = (
                seconds("--keepalive", keepalive),
                seconds("--idle-timeout", idle_timeout),
            ) else {
                return ExitCode::FAILURE;
            };
            let mut builder = SidecarBuilder::new()
                .host(host)
                .port(port)
                .synchronous(synchronous)
                .keepalive(keepalive)
                .idle_timeout(idle_timeout);
            if let Some(max) = max_connections {
                builder = builder.max_connections(max);
            }
            if let Some(token) = &token {
                builder = builder.bearer_token(token.clone());
            }
            if let Some(url) = advertise.or_else(|| {
                std::env::var("DURABLE_ADVERTISE")
                    .ok()
                    .filter(|u| !u.trim().is_empty())
            }) {
                builder = builder.advertise(url);
            }
            let storage = if in_memory {
                builder = builder.in_memory();
                "in memory".to_string()
            } else if let Some(url) = postgres.or_else(|| {
                db.is_none()
                    .then(|| std::env::var("DURABLE_POSTGRES").ok())
                    .flatten()
                    .filter(|u| !u.trim().is_empty())
            }) {
                let shown = durable::sidecar::redact_url(&url);
                builder = builder.postgres(url);
                format!("postgres {shown}")
            } else {
                let path = db.unwrap_or_else(|| PathBuf::from("durable.db"));
                let shown = path.display().to_string();
                builder = builder.sqlite(path);
                format!("sqlite {shown}")
            };
            let sidecar = match builder.start().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("durable sidecar: {e}");
                    return ExitCode::FAILURE;
                }
            };
            println!(
                "durable sidecar listening on {} ({storage})",
                sidecar.local_addr()
            );
            let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
            let http_server = match http {
                None => None,
                Some(http_port) => {
                    let listener = match tokio::net::TcpListener::bind((
                        http_host.as_str(),
                        http_port,
                    ))
                    .await
                    {
                        Ok(listener) => listener,
                        Err(e) => {
                            eprintln!(
                                "durable sidecar: cannot listen for HTTP on {http_host}:{http_port}: {e}"
                            );
                            sidecar.shutdown().await;
                            return ExitCode::FAILURE;
                        }
                    };
                    if let Ok(addr) = listener.local_addr() {
                        println!("durable HTTP API listening on http://{addr}/api/");
                        println!("durable dashboard on http://{addr}/");
                    }
                    let mut connect = durable::client::ConnectOptions::new(sidecar.endpoint());
                    let mut options =
                        durable::http::HttpOptions::new().metrics(sidecar.metrics_source());
                    for host in http_allow_hosts {
                        options = options.allow_host(host);
                    }
                    if let Some(token) = &token {
                        connect = connect.header("authorization", format!("Bearer {token}"));
                        options = options.bearer_token(token.clone());
                    }
                    let client = match durable::DurableClient::connect_lazy(&connect) {
                        Ok(client) => client,
                        Err(e) => {
                            eprintln!("durable sidecar: HTTP API: {e}");
                            sidecar.shutdown().await;
                            return ExitCode::FAILURE;
                        }
                    };
                    Some(tokio::spawn(durable::http::serve_with_options(
                        listener,
                        client,
                        options,
                        async move {
                            let _ = http_stopped.await;
                        },
                    )))
                }
            };
            let failed = tokio::select! {
                () = wait_for_signal() => None,
                failure = sidecar.storage_failure() => Some(failure),
            };
            if let Some(failure) = &failed {
                eprintln!(
                    "durable sidecar: storage failed ({failure}); exiting so it can be restarted from the last commit"
                );
            }
            println!("durable sidecar shutting down");
            let _ = stop_http.send(());
            if let Some(server) = http_server {
                if let Ok(Err(e)) = server.await {
                    eprintln!("durable sidecar: HTTP API: {e}");
                }
            }
            sidecar.shutdown().await;
            if failed.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

/// The API token: the contents of `--token-file`, else `DURABLE_TOKEN`, else none.
fn read_token(file: Option<&std::path::Path>) -> Result<Option<String>, String> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?,
        None => match std::env::var("DURABLE_TOKEN") {
            Ok(token) => token,
            Err(_) => return Ok(None),
        },
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(
            "the API token is empty: put a secret in the token file or DURABLE_TOKEN".into(),
        );
    }
    Ok(Some(token.to_owned()))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
