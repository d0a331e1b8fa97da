//! A Durable Task sidecar: a gRPC server implementing `TaskHubSidecarService`, so workers and
//! clients of any Durable Task SDK (Python, .NET, JS, Go, and `durable` itself) can run
//! orchestrations against it. `durable::run()` embeds it; the `durable sidecar` command runs it
//! on its own.
//!
//! Storage is in memory, a SQLite file (WAL journal, `synchronous=NORMAL`, group commit) or a
//! PostgreSQL database (a writer connection with group commit per partition, `synchronous_commit`
//! on), where several sidecars are replicas of one task hub (see `replicas`).
//! With SQLite, every orchestration step commits its new history, activity tasks, timers,
//! sub-orchestration starts and events to other instances in one transaction before anything is
//! dispatched or acknowledged; after a restart on the same file every unfinished instance
//! continues, un-acknowledged work is redelivered (activities run at least once) and timers are
//! re-armed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), durable_sidecar::SidecarError> {
//! use durable_sidecar::SidecarBuilder;
//!
//! let sidecar = SidecarBuilder::new()
//!     .port(4001)
//!     .sqlite("durable.db")
//!     .start()
//!     .await?;
//! println!("point your workers at {}", sidecar.endpoint());
//! // ... run workers and clients against it ...
//! sidecar.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Where things live: `server` (the tonic service: request validation and gRPC statuses) calls
//! the `engine` (one module per concern: `lifecycle` for client-driven changes, `episode` for
//! worker completions, `routing` between instances, `timers`, `dispatch` to worker streams,
//! `queries` for reads, waits and purge, `batch` and `state` underneath), which writes through
//! `storage` (SQLite, PostgreSQL or memory). `work_queue` holds a worker stream's hints and
//! filters. On PostgreSQL, `replicas` runs one engine per partition this sidecar serves
//! (`partitions`), its `front` service routing each call to the partition it concerns, here or
//! at another replica, and `engine::messages` carries deliveries between partitions.
//!
//! Memory holds only active work: an instance leaves it once its final status is durable, and
//! reads of finished instances (get, wait, history, queries, purge, restart, rewind) go to
//! storage. Start-up reads only active instances, so neither memory nor restart time grows
//! with the number of finished instances kept in the file.

mod connections;
mod engine;
mod health;
mod metrics;
mod partitions;
mod replicas;
mod seed;
mod server;
mod storage;
mod time;
mod work_queue;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;

pub(crate) use durable_proto as proto;
use proto::task_hub_sidecar_service_server::TaskHubSidecarServiceServer;
#[doc(hidden)]
pub use seed::seed_finished_chains;
use storage::{CommitSignal, Storage};

/// Largest gRPC message the sidecar accepts or sends (payloads, histories): 16 MiB.
/// Larger requests are rejected with `RESOURCE_EXHAUSTED`/`OUT_OF_RANGE` by the transport.
pub(crate) const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Why a sidecar could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SidecarError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another process using the port? try --port 0)")]
    Bind {
        /// The address that was asked for.
        addr: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The SQLite database could not be opened or read.
    #[error("cannot open the sidecar database {path}: {message}")]
    Storage {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The PostgreSQL database could not be reached, locked or read.
    #[error("cannot use the PostgreSQL database {url}: {message}")]
    Postgres {
        /// The connection URL, password removed.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// A connection URL with its password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// How long a connection may stay idle by default (see [`SidecarBuilder::idle_timeout`]).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How often the sidecar pings each connection by default (see [`SidecarBuilder::keepalive`]).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(10);

/// How far an acknowledged step is committed before the sidecar answers: SQLite's
/// `synchronous` setting, PostgreSQL's `synchronous_commit`. Group commit keeps either cheap:
/// one flush per batch of steps, not per step.
///
/// ```
/// use durable_sidecar::{SidecarBuilder, Synchronous};
///
/// let relaxed: Synchronous = "normal".parse().expect("a known value");
/// let builder = SidecarBuilder::new().sqlite("durable.db").synchronous(relaxed);
/// # drop(builder);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Flushed to disk (fsync) before it is acknowledged: acknowledged work survives a crash
    /// of the machine or a power cut. The default.
    #[default]
    Full,
    /// Handed to the operating system before it is acknowledged: survives a crash of the
    /// sidecar process (`kill -9`), but a machine crash or power cut may lose the last
    /// seconds of acknowledged work. SQLite `synchronous=NORMAL`, PostgreSQL
    /// `synchronous_commit=off`. An explicit opt-in for throughput on slow disks.
    Normal,
}

impl std::str::FromStr for Synchronous {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            _ => Err(format!(
                "unknown synchronous mode {s:?}: use \"full\" (fsync before acknowledging, the default) or \"normal\""
            )),
        }
    }
}

#[derive(Debug, Clone)]
enum StorageChoice {
    Memory,
    Sqlite(PathBuf),
    Postgres(String),
}

/// Configures and starts a sidecar.
///
/// Defaults: listen on `127.0.0.1`, an ephemeral port (0), in-memory storage.
///
/// ```no_run
/// # async fn demo() -> Result<(), durable_sidecar::SidecarError> {
/// let sidecar = durable_sidecar::SidecarBuilder::new().in_memory().start().await?;
/// assert!(sidecar.endpoint().starts_with("http://127.0.0.1:"));
/// sidecar.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SidecarBuilder {
    host: String,
    port: u16,
    storage: StorageChoice,
    synchronous: Synchronous,
    max_connections: Option<usize>,
    keepalive: Duration,
    idle_timeout: Duration,
    token: Option<String>,
    advertise: Option<String>,
}

impl Default for SidecarBuilder {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_string(),
            port: 0,
            storage: StorageChoice::Memory,
            synchronous: Synchronous::Full,
            max_connections: None,
            keepalive: DEFAULT_KEEPALIVE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            token: None,
            advertise: None,
        }
    }
}

impl SidecarBuilder {
    /// A builder with the defaults (`127.0.0.1`, ephemeral port, in memory).
    pub fn new() -> Self {
        Self::default()
    }

    /// The interface to listen on (default `"127.0.0.1"`; use `"0.0.0.0"` to accept remote
    /// workers — the protocol has no authentication).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// The TCP port (default 0 = pick a free one; read it back with [`SidecarHandle::local_addr`]).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Keep instances in a SQLite file (created if missing), so they survive restarts.
    pub fn sqlite(mut self, path: impl Into<PathBuf>) -> Self {
        self.storage = StorageChoice::Sqlite(path.into());
        self
    }

    /// Keep instances in a PostgreSQL database (`postgres://user:password@host:port/db`, or
    /// any libpq-style connection string). Tables are created or migrated on start. Several
    /// sidecars on one database are replicas of one task hub: each serves a share of the
    /// instances, any of them answers every call, and when one stops or dies the others take
    /// its share over within seconds (see [`advertise`](Self::advertise)).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), durable_sidecar::SidecarError> {
    /// let sidecar = durable_sidecar::SidecarBuilder::new()
    ///     .postgres("postgres://durable@127.0.0.1:5432/durable")
    ///     .start()
    ///     .await?;
    /// # sidecar.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn postgres(mut self, url: impl Into<String>) -> Self {
        self.storage = StorageChoice::Postgres(url.into());
        self
    }

    /// How far a step is committed before it is acknowledged (default [`Synchronous::Full`]:
    /// fsynced, so it survives a machine crash). Applies to SQLite and PostgreSQL.
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// At most this many client and worker connections open at once (default: three quarters
    /// of the process's open-file limit, between 64 and 10,000). A connection beyond the cap
    /// is closed at once and the sidecar logs a warning saying so.
    ///
    /// ```
    /// let builder = durable_sidecar::SidecarBuilder::new().max_connections(200);
    /// # drop(builder);
    /// ```
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max.max(1));
        self
    }

    /// How often the sidecar pings each connection (HTTP/2 PING, default 10 s); a connection
    /// whose peer does not answer within twice this long is closed. That is how a stopped or
    /// hung worker process loses its work: the work items it held go back to the queues and
    /// to the other workers, and its late completions are refused (NOT_FOUND).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// // A frozen worker loses its work within 3 x 5 s.
    /// let builder = durable_sidecar::SidecarBuilder::new().keepalive(Duration::from_secs(5));
    /// # drop(builder);
    /// ```
    pub fn keepalive(mut self, interval: Duration) -> Self {
        self.keepalive = interval.max(Duration::from_millis(100));
        self
    }

    /// Closes a connection that has no long-lived call open (work-item stream, wait, history
    /// stream) and started no call for this long (default 5 minutes). SDK clients reconnect
    /// by themselves when they next make a call.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let builder = durable_sidecar::SidecarBuilder::new().idle_timeout(Duration::from_secs(60));
    /// # drop(builder);
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout.max(Duration::from_millis(100));
        self
    }

    /// Requires every call to carry the metadata `authorization: Bearer <token>` (refused with
    /// `UNAUTHENTICATED` otherwise). The official SDKs send it as call metadata (the Python
    /// SDK's `metadata=[("authorization", "Bearer ...")]`), this crate's runtime with
    /// `.header("authorization", "Bearer ...")`.
    ///
    /// ```
    /// let builder = durable_sidecar::SidecarBuilder::new().bearer_token("s3cret");
    /// # drop(builder);
    /// ```
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The URL other replicas of a PostgreSQL task hub reach this one at, to forward the calls
    /// for instances it serves (default: [`SidecarHandle::endpoint`], the loopback address
    /// when listening on every interface, so set it for replicas on several machines).
    ///
    /// ```
    /// let builder = durable_sidecar::SidecarBuilder::new()
    ///     .host("0.0.0.0")
    ///     .port(4001)
    ///     .postgres("postgres://durable@db.internal/durable")
    ///     .advertise("http://10.0.0.7:4001");
    /// # drop(builder);
    /// ```
    pub fn advertise(mut self, url: impl Into<String>) -> Self {
        self.advertise = Some(url.into());
        self
    }

    /// Keep instances in memory only (the default); everything is lost on shutdown.
    pub fn in_memory(mut self) -> Self {
        self.storage = StorageChoice::Memory;
        self
    }

    /// Opens the storage, recovers unfinished instances, binds the port and starts serving.
    pub async fn start(self) -> Result<SidecarHandle, SidecarError> {
        let signal = Arc::new(CommitSignal::default());
        let storage_error = |e: storage::StorageError| match &self.storage {
            StorageChoice::Postgres(url) => SidecarError::Postgres {
                url: redact_url(url),
                message: e.to_string(),
            },
            StorageChoice::Sqlite(path) => SidecarError::Storage {
                path: path.clone(),
                message: e.to_string(),
            },
            StorageChoice::Memory => SidecarError::Storage {
                path: PathBuf::from(":memory:"),
                message: e.to_string(),
            },
        };
        let addr = format!("{}:{}", self.host, self.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| SidecarError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| SidecarError::Bind { addr, source })?;
        let core = match &self.storage {
            StorageChoice::Postgres(url) => {
                let (url, synchronous) = (url.clone(), self.synchronous);
                let db = tokio::task::spawn_blocking(move || {
                    storage::postgres::PostgresDatabase::connect(&url, synchronous)
                })
                .await
                .map_err(|e| storage_error(storage::StorageError::Schema(e.to_string())))?
                .map_err(storage_error)?;
                let address = self
                    .advertise
                    .clone()
                    .unwrap_or_else(|| endpoint_of(local_addr));
                let set = replicas::ReplicaSet::start(db, address, self.token.clone())
                    .await
                    .map_err(storage_error)?;
                Core::Replicas(set)
            }
            _ => Core::Single(self.open_single(&signal, local_addr, storage_error).await?),
        };

        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = match &core {
            Core::Single(engine) => self.serve(
                server::SidecarService {
                    engine: Arc::clone(engine),
                    in_process: false,
                },
                listener,
                signal,
                core.clone(),
                stop_rx,
            ),
            Core::Replicas(set) => self.serve(
                replicas::ReplicaFront {
                    set: Arc::clone(set),
                    in_process: false,
                },
                listener,
                signal,
                core.clone(),
                stop_rx,
            ),
        };
        tracing::info!(%local_addr, "durable sidecar listening");
        Ok(SidecarHandle {
            local_addr,
            core,
            stop: Some(stop_tx),
            server: Some(server),
        })
    }
}

impl SidecarBuilder {
    /// Serves `service` on `listener` until `stop` fires: bearer token, failure refusal,
    /// connection limits and keepalive as configured, and the gRPC health service reporting
    /// `core`'s readiness.
    fn serve<S>(
        &self,
        service: S,
        listener: tokio::net::TcpListener,
        signal: Arc<CommitSignal>,
        core: Core,
        stop_rx: oneshot::Receiver<()>,
    ) -> JoinHandle<()>
    where
        S: proto::task_hub_sidecar_service_server::TaskHubSidecarService,
    {
        let service = TaskHubSidecarServiceServer::new(service)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        // After a failed commit every RPC is refused: memory no longer matches the database.
        let token = self.token.clone();
        let service = InterceptedService::new(service, move |req: tonic::Request<()>| {
            if let Some(activity) = connections::activity_of(&req) {
                activity.touch();
            }
            if let Some(token) = &token {
                check_token(&req, token)?;
            }
            match failure_status(&signal) {
                Some(status) => Err(status),
                None => Ok(req),
            }
        });
        let max_connections = self
            .max_connections
            .unwrap_or_else(connections::default_max_connections);
        let incoming = ReceiverStream::new(connections::accept(
            listener,
            max_connections,
            self.idle_timeout,
        ));
        let keepalive = self.keepalive;
        let (reporter, health) = tonic_health::server::health_reporter();
        tokio::spawn(async move {
            let server = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(keepalive))
                .http2_keepalive_timeout(Some(keepalive * 2))
                .layer(tower::util::MapResponseLayer::new(
                    decode_errors_are_invalid_arguments,
                ))
                .add_service(health)
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stop_rx.await;
                });
            // The health reporter lives as long as the server.
            let result = tokio::select! {
                result = server => result,
                () = health::report(reporter, core) => Ok(()),
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "sidecar server stopped with an error");
            }
        })
    }

    /// Opens in-memory or SQLite storage, recovers and starts the one engine.
    async fn open_single(
        &self,
        signal: &Arc<CommitSignal>,
        local_addr: SocketAddr,
        storage_error: impl Fn(storage::StorageError) -> SidecarError,
    ) -> Result<Arc<engine::Engine>, SidecarError> {
        let mut sqlite = None;
        let storage: Arc<dyn Storage> = match &self.storage {
            StorageChoice::Sqlite(path) => {
                let opened = Arc::new(
                    storage::sqlite::SqliteStorage::open(
                        path.clone(),
                        Arc::clone(signal),
                        self.synchronous,
                    )
                    .map_err(&storage_error)?,
                );
                sqlite = Some(Arc::clone(&opened));
                opened
            }
            _ => Arc::new(storage::memory::MemoryStorage::new(Arc::clone(signal))),
        };
        let loaded = {
            let storage = Arc::clone(&storage);
            tokio::task::spawn_blocking(move || storage.load())
                .await
                .map_err(|e| storage_error(storage::StorageError::Schema(e.to_string())))?
                .map_err(&storage_error)?
        };
        let engine = engine::Engine::new(storage, Arc::clone(signal), loaded, None)
            .map_err(&storage_error)?;
        engine.spawn_tasks();
        if let Some(sqlite) = sqlite {
            sqlite.advertise(&endpoint_of(local_addr));
        }
        Ok(engine)
    }
}

/// What serves the calls: one engine (memory, SQLite), or a replica of a PostgreSQL task hub.
#[derive(Clone)]
enum Core {
    Single(Arc<engine::Engine>),
    Replicas(Arc<replicas::ReplicaSet>),
}

impl Core {
    fn service(&self, in_process: bool) -> Arc<proto::SidecarService> {
        match self {
            Self::Single(engine) => Arc::new(server::SidecarService {
                engine: Arc::clone(engine),
                in_process,
            }),
            Self::Replicas(set) => Arc::new(replicas::ReplicaFront {
                set: Arc::clone(set),
                in_process,
            }),
        }
    }

    fn metrics_text(&self) -> String {
        match self {
            Self::Single(engine) => engine.metrics_text(),
            Self::Replicas(set) => set.metrics_text(),
        }
    }

    /// Why this sidecar cannot serve calls right now; `None` when it can.
    fn unready(&self) -> Option<String> {
        match self {
            Self::Single(engine) => engine
                .storage_signal()
                .failure()
                .map(|e| format!("the storage failed ({e}); restart the sidecar")),
            Self::Replicas(set) => set.unready(),
        }
    }
}

/// UNAVAILABLE for every call once the (single engine's) storage failed.
fn failure_status(signal: &CommitSignal) -> Option<tonic::Status> {
    signal.failure_status()
}

/// Refuses a call without `authorization: Bearer <token>`; compares in constant time.
fn check_token(req: &tonic::Request<()>, token: &str) -> Result<(), tonic::Status> {
    let given = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(subtle::ConstantTimeEq::ct_eq(
        given.trim().as_bytes(),
        token.as_bytes(),
    )) {
        Ok(())
    } else {
        Err(tonic::Status::unauthenticated(
            "this sidecar requires the call metadata `authorization: Bearer <token>` with the token it was started with (--token-file or DURABLE_TOKEN)",
        ))
    }
}

/// tonic answers a request whose protobuf does not decode with INTERNAL; the fault is the
/// caller's, so it becomes INVALID_ARGUMENT (the message, naming what failed, stays).
fn decode_errors_are_invalid_arguments<B>(
    mut response: tonic::codegen::http::Response<B>,
) -> tonic::codegen::http::Response<B> {
    let headers = response.headers_mut();
    let undecodable = headers.get("grpc-status").is_some_and(|s| s == "13")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| m.starts_with("failed%20to%20decode"));
    if undecodable {
        headers.insert(
            "grpc-status",
            tonic::codegen::http::HeaderValue::from_static("3"),
        );
    }
    response
}

/// The URL clients use for a listen address (loopback for an unspecified one).
fn endpoint_of(mut addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}

/// A running sidecar. Stop it with [`SidecarHandle::shutdown`]; dropping the handle stops
/// accepting connections too, but without waiting for storage to be flushed.
pub struct SidecarHandle {
    local_addr: SocketAddr,
    core: Core,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SidecarHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl SidecarHandle {
    /// The address the server listens on (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL to give SDK workers and clients, e.g. `"http://127.0.0.1:4001"`. When the
    /// sidecar listens on every interface (`0.0.0.0` or `::`), this is the loopback address
    /// of the same family (`127.0.0.1` or `[::1]`): an unspecified address is not connectable.
    pub fn endpoint(&self) -> String {
        endpoint_of(self.local_addr)
    }

    /// The sidecar's metrics in the Prometheus text format: work items dispatched, completed
    /// and abandoned by kind, episode and storage-commit latency histograms, live instances
    /// by status, queued work by kind, connected workers. `durable sidecar --http PORT`
    /// serves them at `/metrics`.
    pub fn metrics(&self) -> String {
        self.core.metrics_text()
    }

    /// The service itself, for callers in this process: requests and responses pass as
    /// values (no HTTP/2, no socket, no protobuf encoding), with the same validation, results
    /// and errors as over gRPC. The embedded runtime's worker and client use it.
    ///
    /// ```no_run
    /// use durable_proto::task_hub_sidecar_service_server::TaskHubSidecarService as _;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let sidecar = durable_sidecar::SidecarBuilder::new().in_memory().start().await?;
    /// let service = sidecar.service();
    /// service.hello(tonic::Request::new(())).await?;
    /// # Ok(()) }
    /// ```
    pub fn service(&self) -> Arc<proto::SidecarService> {
        self.core.service(true)
    }

    /// A `'static` function that renders [`metrics`](Self::metrics), for an HTTP handler.
    pub fn metrics_source(&self) -> impl Fn() -> String + Send + Sync + 'static {
        let core = match &self.core {
            Core::Single(engine) => Core::Single(Arc::clone(engine)),
            Core::Replicas(set) => Core::Replicas(Arc::clone(set)),
        };
        move || core.metrics_text()
    }

    /// Resolves once a storage commit has failed (a full or read-only disk, a lost database
    /// that did not come back), with the error. From then on every RPC is refused with
    /// UNAVAILABLE, since memory no longer matches storage: stop the sidecar and start it
    /// again to recover from the last commit. `durable sidecar` exits with status 1 then, so
    /// a supervisor restarts it.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), durable_sidecar::SidecarError> {
    /// let sidecar = durable_sidecar::SidecarBuilder::new().sqlite("durable.db").start().await?;
    /// let error = sidecar.storage_failure().await;
    /// eprintln!("storage failed: {error}");
    /// sidecar.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn storage_failure(&self) -> String {
        match &self.core {
            Core::Single(engine) => engine.storage_signal().wait_for_failure().await,
            // A replica rides out failures: a partition whose commit failed is handed back and
            // taken again (reloaded from the database) once PostgreSQL is back.
            Core::Replicas(_) => std::future::pending().await,
        }
    }

    /// Graceful stop: no new work is dispatched, work-item streams and long polls are closed,
    /// in-flight RPCs finish, then storage is flushed and closed.
    pub async fn shutdown(mut self) {
        if let Core::Single(engine) = &self.core {
            engine.begin_shutdown();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Core::Replicas(set) = &self.core {
            // Hands its partitions back (flushed) so other replicas take them at once.
            set.shutdown().await;
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        if let Core::Single(engine) = &self.core {
            let engine = Arc::clone(engine);
            let _ = tokio::task::spawn_blocking(move || engine.close_storage()).await;
        }
    }
}

impl Drop for SidecarHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            match &self.core {
                Core::Single(engine) => engine.begin_shutdown(),
                Core::Replicas(set) => set.abort(),
            }
            let _ = stop.send(());
        }
    }
}
