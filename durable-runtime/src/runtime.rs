//! [`run`] and [`Runtime::builder`]: one call that connects a worker and a client to a
//! sidecar (an external one, or the embedded one).
//!
//! Where the sidecar comes from, in order:
//!
//! 1. [`RuntimeBuilder::sidecar`] (e.g. `http://127.0.0.1:4001`);
//! 2. the environment variable `DURABLE_SIDECAR` ([`SIDECAR_ENV`]);
//! 3. otherwise an **embedded** sidecar started in this process, storing its state in the
//!    SQLite file `.durable/durable.db` ([`DEFAULT_DATABASE_PATH`]), or in the file named by
//!    `DURABLE_DB` ([`DATABASE_ENV`]), or by [`RuntimeBuilder::database`];
//!    [`RuntimeBuilder::postgres`] or `DURABLE_POSTGRES` ([`POSTGRES_ENV`]) keep it in a
//!    PostgreSQL database instead; [`RuntimeBuilder::in_memory`] keeps state in memory (tests).

use std::path::PathBuf;
use std::time::Duration;

use crate::client::{ClientError, ConnectOptions, DurableClient};
use crate::registry::{Registry, RegistryError};
use crate::worker::{Worker, WorkerHandle, WorkerOptions, WorkerStatus};

/// The environment variable naming an external sidecar (`http://host:port`, `https://...`).
pub const SIDECAR_ENV: &str = "DURABLE_SIDECAR";
/// The environment variable naming the embedded sidecar's SQLite file.
pub const DATABASE_ENV: &str = "DURABLE_DB";
/// The environment variable naming a PostgreSQL database for the embedded sidecar
/// (`postgres://user:password@host:port/db`); it wins over `DURABLE_DB`.
pub const POSTGRES_ENV: &str = "DURABLE_POSTGRES";
/// The embedded sidecar's SQLite file when nothing else is configured.
pub const DEFAULT_DATABASE_PATH: &str = ".durable/durable.db";

/// Errors of [`run`] and [`RuntimeBuilder::start`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The embedded sidecar failed to start.
    #[error("the embedded sidecar failed to start: {0}")]
    Embedded(String),
    /// No sidecar address is configured and this build has no embedded sidecar.
    #[error(
        "no sidecar configured: set DURABLE_SIDECAR (e.g. http://127.0.0.1:4001) or call RuntimeBuilder::sidecar, or enable the `embedded` feature of durable-runtime to run one in this process"
    )]
    NoSidecar,
    /// The HTTP management API could not start.
    #[error("the HTTP management API failed to start: {0}")]
    Http(String),
    /// Two orchestrators or activities share a name.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The external sidecar did not answer `Hello` (see [`RuntimeBuilder::skip_sidecar_check`]).
    #[error(
        "cannot reach the sidecar at {endpoint} (set by {configured_by}): no answer to Hello after {tries} tries over {:.1} s (last error: {last_error}); start it (`durable sidecar`), fix the address, or call RuntimeBuilder::skip_sidecar_check() to connect later",
        waited.as_secs_f64()
    )]
    Unreachable {
        /// The address that was tried.
        endpoint: String,
        /// Where the address came from (`DURABLE_SIDECAR` or `RuntimeBuilder::sidecar`).
        configured_by: &'static str,
        /// How many `Hello`s were sent.
        tries: usize,
        /// How long it tried.
        waited: Duration,
        /// The last failure.
        last_error: String,
    },
    /// The connection settings are invalid (endpoint, metadata header, TLS).
    #[error("invalid sidecar connection settings: {0}")]
    Connection(#[from] ClientError),
}

/// Entry point of the runtime builder: `durable::Runtime::builder()`.
///
/// ```no_run
/// # async fn demo() -> Result<(), durable::RuntimeError> {
/// let runtime = durable::Runtime::builder()
///     .sidecar("http://127.0.0.1:4001")
///     .task_hub("orders")
///     .max_concurrent_activities(64)
///     .start()
///     .await?;
/// let client = runtime.client();
/// // ...
/// runtime.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Runtime {
    _private: (),
}

impl Runtime {
    /// A builder with the defaults.
    ///
    /// Where the sidecar comes from, in order: [`RuntimeBuilder::sidecar`]; the environment
    /// variable `DURABLE_SIDECAR` ([`SIDECAR_ENV`]); otherwise an **embedded** sidecar in this
    /// process, storing its state in the SQLite file `.durable/durable.db`
    /// ([`DEFAULT_DATABASE_PATH`]), or the file named by `DURABLE_DB` ([`DATABASE_ENV`]) or by
    /// [`RuntimeBuilder::database`]; [`RuntimeBuilder::postgres`] or `DURABLE_POSTGRES`
    /// ([`POSTGRES_ENV`]) use a PostgreSQL database; [`RuntimeBuilder::in_memory`] keeps state
    /// in memory.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }
}

/// Where the embedded sidecar keeps its state.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmbeddedStorage {
    /// A SQLite database file (created with its directory if missing).
    Sqlite(PathBuf),
    /// In memory: everything is lost when the program ends.
    InMemory,
    /// A PostgreSQL database (connection URL); tables are created on start.
    Postgres(String),
}

/// Configures and starts a runtime: a worker plus a client, attached to a sidecar.
#[derive(Debug)]
pub struct RuntimeBuilder {
    sidecar: Option<String>,
    storage: Option<EmbeddedStorage>,
    connection: ConnectOptions,
    worker: WorkerOptions,
    registry: Option<Registry>,
    use_environment: bool,
    check_sidecar: bool,
    default_logging: bool,
    #[cfg(feature = "embedded")]
    synchronous: crate::sidecar::Synchronous,
    transport: Option<EmbeddedTransport>,
    #[cfg(feature = "http")]
    http: Option<std::net::SocketAddr>,
}

/// How the runtime's worker and client reach the embedded sidecar. Either way the sidecar also
/// serves gRPC on its port, for other processes and other languages' SDKs.
///
/// ```
/// use durable::EmbeddedTransport;
///
/// let builder = durable::Runtime::builder().embedded_transport(EmbeddedTransport::Grpc);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmbeddedTransport {
    /// Call the sidecar's service directly: work items, completions and client calls pass as
    /// values, with no HTTP/2, socket or protobuf encoding (the default).
    #[default]
    InProcess,
    /// Go through gRPC on the loopback port, as an external worker would.
    Grpc,
}

impl EmbeddedTransport {
    /// The transport `DURABLE_EMBEDDED_TRANSPORT` names (`in-process` or `grpc`).
    fn from_env() -> Result<Option<Self>, RuntimeError> {
        let Ok(value) = std::env::var(TRANSPORT_ENV) else {
            return Ok(None);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "in-process" | "inprocess" => Ok(Some(Self::InProcess)),
            "grpc" => Ok(Some(Self::Grpc)),
            _ => Err(RuntimeError::Embedded(format!(
                "{TRANSPORT_ENV}={value:?} is not a transport: use `in-process` or `grpc`"
            ))),
        }
    }
}

/// Chooses the embedded transport; read even under `ignore_environment` (it changes how the
/// worker reaches the sidecar, never what happens), so a test suite can run on both.
const TRANSPORT_ENV: &str = "DURABLE_EMBEDDED_TRANSPORT";

impl Default for RuntimeBuilder {
    fn default() -> Self {
        Self {
            sidecar: None,
            storage: None,
            // The endpoint is filled in by `start`.
            connection: ConnectOptions::new(""),
            worker: WorkerOptions::default(),
            registry: None,
            use_environment: true,
            check_sidecar: true,
            transport: None,
            default_logging: true,
            #[cfg(feature = "embedded")]
            synchronous: crate::sidecar::Synchronous::Full,
            #[cfg(feature = "http")]
            http: None,
        }
    }
}

impl RuntimeBuilder {
    /// Uses the external sidecar at `endpoint` (overrides `DURABLE_SIDECAR`).
    pub fn sidecar(mut self, endpoint: impl Into<String>) -> Self {
        self.sidecar = Some(endpoint.into());
        self
    }

    /// Stores the embedded sidecar's state in this SQLite file (overrides `DURABLE_DB`).
    pub fn database(mut self, path: impl Into<PathBuf>) -> Self {
        self.storage = Some(EmbeddedStorage::Sqlite(path.into()));
        self
    }

    /// Stores the embedded sidecar's state in a PostgreSQL database (overrides
    /// `DURABLE_POSTGRES` and `DURABLE_DB`). Programs on one machine whose runtimes use the same
    /// database are replicas of one task hub: they share its instances and answer for each other.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), durable::RuntimeError> {
    /// let runtime = durable::Runtime::builder()
    ///     .postgres("postgres://durable:secret@127.0.0.1:5432/orders")
    ///     .start()
    ///     .await?;
    /// # runtime.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn postgres(mut self, url: impl Into<String>) -> Self {
        self.storage = Some(EmbeddedStorage::Postgres(url.into()));
        self
    }

    /// How far the embedded sidecar commits a step before acknowledging it (default
    /// [`Synchronous::Full`](crate::sidecar::Synchronous::Full): fsynced, so it survives a
    /// machine crash; `Normal` survives only a crash of the program).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), durable::RuntimeError> {
    /// let runtime = durable::Runtime::builder()
    ///     .synchronous(durable::sidecar::Synchronous::Normal)
    ///     .start()
    ///     .await?;
    /// # runtime.shutdown().await;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "embedded")]
    pub fn synchronous(mut self, synchronous: crate::sidecar::Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Keeps the embedded sidecar's state in memory.
    pub fn in_memory(mut self) -> Self {
        self.storage = Some(EmbeddedStorage::InMemory);
        self
    }

    /// Sends `taskhub: <name>` on every call.
    pub fn task_hub(mut self, name: impl Into<String>) -> Self {
        self.connection = self.connection.task_hub(name);
        self
    }

    /// Sends a metadata header on every call (API tokens and the like).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.connection = self.connection.header(name, value);
        self
    }

    /// Trusts this PEM CA certificate for `https://` sidecars.
    pub fn tls_ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.connection = self.connection.tls_ca_certificate(pem);
        self
    }

    /// Checks the sidecar's TLS certificate against this name.
    pub fn tls_domain_name(mut self, name: impl Into<String>) -> Self {
        self.connection = self.connection.tls_domain_name(name);
        self
    }

    /// At most `n` orchestration episodes at once.
    pub fn max_concurrent_orchestrations(mut self, n: usize) -> Self {
        self.worker = self.worker.max_concurrent_orchestrations(n);
        self
    }

    /// At most `n` activities at once.
    pub fn max_concurrent_activities(mut self, n: usize) -> Self {
        self.worker = self.worker.max_concurrent_activities(n);
        self
    }

    /// How long [`RuntimeHandle::shutdown`] lets running work finish.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.worker = self.worker.shutdown_grace(grace);
        self
    }

    /// Replaces all worker options.
    pub fn worker_options(mut self, options: WorkerOptions) -> Self {
        self.worker = options;
        self
    }

    /// Serves this registry instead of [`Registry::from_inventory`].
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Also serves the HTTP management API ([`crate::http`]) on this address: start
    /// orchestrations with `POST /api/orchestrators/{name}`, poll `GET /api/instances/{id}`.
    /// Port 0 picks a free port; [`RuntimeHandle::http_addr`] tells which. Only the
    /// orchestrators this runtime registered can be started there (others get `404` naming the
    /// known ones). It answers requests for loopback host names only (`421` otherwise); to
    /// serve other names or require a token, serve [`crate::http::router_with`] yourself.
    /// The same port serves the web dashboard at `/` and, with the embedded sidecar,
    /// Prometheus metrics at `/metrics`. Needs the feature `http` (on by default).
    #[cfg(feature = "http")]
    pub fn http(mut self, addr: std::net::SocketAddr) -> Self {
        self.http = Some(addr);
        self
    }

    /// Returns from [`RuntimeBuilder::start`] without checking that an external sidecar
    /// answers (by default `start` sends `Hello` a few times over about 5 s and fails naming
    /// the address). Use it when the sidecar may come up after the program; the worker keeps
    /// retrying in the background either way.
    pub fn skip_sidecar_check(mut self) -> Self {
        self.check_sidecar = false;
        self
    }

    /// Whether [`start`](Self::start) installs a log subscriber when the program has none
    /// (default `true`): compact lines on stderr, filtered by `RUST_LOG` (default `info`),
    /// with a line per orchestration started, completed or failed and the orchestrators'
    /// replay-safe logs (`durable::info!`). A program that sets up `tracing` itself keeps its
    /// own; `false` installs nothing.
    pub fn default_logging(mut self, install: bool) -> Self {
        self.default_logging = install;
        self
    }

    /// How the worker and the client reach the embedded sidecar (default: in-process, or
    /// `DURABLE_EMBEDDED_TRANSPORT=grpc|in-process`); ignored with an external sidecar.
    pub fn embedded_transport(mut self, transport: EmbeddedTransport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Ignores `DURABLE_SIDECAR`, `DURABLE_POSTGRES` and `DURABLE_DB` (for tests that must not
    /// depend on the environment).
    pub fn ignore_environment(mut self) -> Self {
        self.use_environment = false;
        self
    }

    fn env(&self, name: &str) -> Option<String> {
        if !self.use_environment {
            return None;
        }
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }

    /// Starts the worker and returns a handle with a client. With an external sidecar it
    /// first checks that the sidecar answers `Hello` (a few tries over about 5 s; fails with
    /// [`RuntimeError::Unreachable`] naming the address, or at once with
    /// [`RuntimeError::Connection`] for a malformed one; [`RuntimeBuilder::skip_sidecar_check`]
    /// turns the check off); with the embedded sidecar it returns once the sidecar is listening.
    pub async fn start(mut self) -> Result<RuntimeHandle, RuntimeError> {
        if self.default_logging {
            crate::default_logging::install();
        }
        let registry = match self.registry.take() {
            Some(registry) => registry,
            None => Registry::from_inventory()?,
        };
        let external = match self.sidecar.clone() {
            Some(endpoint) => Some((endpoint, "RuntimeBuilder::sidecar")),
            None => self.env(SIDECAR_ENV).map(|e| (e, SIDECAR_ENV)),
        };
        // Resolved before the embedded sidecar starts, so a malformed value fails at once.
        let transport = match (self.transport, &external) {
            (Some(transport), _) => transport,
            (None, None) => EmbeddedTransport::from_env()?.unwrap_or_default(),
            (None, Some(_)) => EmbeddedTransport::default(),
        };
        let (endpoint, embedded, configured_by) = match external {
            Some((endpoint, by)) => (endpoint, None, Some(by)),
            None => {
                let storage =
                    self.storage
                        .clone()
                        .unwrap_or_else(|| match self.env(POSTGRES_ENV) {
                            Some(url) => EmbeddedStorage::Postgres(url),
                            None => EmbeddedStorage::Sqlite(PathBuf::from(
                                self.env(DATABASE_ENV)
                                    .unwrap_or_else(|| DEFAULT_DATABASE_PATH.to_owned()),
                            )),
                        });
                let config = EmbeddedConfig {
                    storage,
                    #[cfg(feature = "embedded")]
                    synchronous: self.synchronous,
                };
                let (endpoint, guard) = start_embedded(&config).await?;
                (endpoint, Some(guard), None)
            }
        };
        #[cfg_attr(not(feature = "embedded"), allow(unused_mut))]
        let mut connection = self.connection.endpoint_replaced(endpoint.clone());
        #[cfg(feature = "embedded")]
        if let (Some(guard), EmbeddedTransport::InProcess) = (&embedded, transport) {
            connection = connection.in_process(guard.handle.service());
        }
        #[cfg(not(feature = "embedded"))]
        let _ = transport;
        let client = DurableClient::connect_lazy(&connection)?;
        if let Some(configured_by) = configured_by.filter(|_| self.check_sidecar) {
            check_sidecar(&client, &endpoint, configured_by).await?;
        }
        #[cfg(feature = "http")]
        let http = match self.http {
            Some(addr) => {
                let names = registry.orchestrator_names().map(str::to_owned).collect();
                #[cfg_attr(not(feature = "embedded"), allow(unused_mut))]
                let mut options = crate::http::HttpOptions::new().orchestrators(names);
                #[cfg(feature = "embedded")]
                if let Some(guard) = &embedded {
                    options = options.metrics(guard.handle.metrics_source());
                }
                Some(HttpServer::start(addr, client.clone(), options).await?)
            }
            None => None,
        };
        let worker = Worker::new(registry, connection)
            .with_options(self.worker)
            .start();
        Ok(RuntimeHandle {
            client,
            worker,
            endpoint,
            embedded,
            #[cfg(feature = "http")]
            http,
        })
    }
}

/// `Hello` tries before [`RuntimeBuilder::start`] gives up on an external sidecar, and the
/// pause before each retry.
const CHECK_RETRIES: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];
/// How long one `Hello` may take.
const HELLO_DEADLINE: Duration = Duration::from_secs(1);

/// Sends `Hello` until the sidecar answers, a few times; fails naming the address.
async fn check_sidecar(
    client: &DurableClient,
    endpoint: &str,
    configured_by: &'static str,
) -> Result<(), RuntimeError> {
    let started = std::time::Instant::now();
    let mut last = String::new();
    for (attempt, pause) in std::iter::once(Duration::ZERO)
        .chain(CHECK_RETRIES)
        .enumerate()
    {
        tokio::time::sleep(pause).await;
        match tokio::time::timeout(HELLO_DEADLINE, client.hello()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("no answer within {HELLO_DEADLINE:?}"),
        }
        tracing::debug!(endpoint, attempt, error = %last, "the sidecar does not answer yet");
    }
    Err(RuntimeError::Unreachable {
        endpoint: endpoint.to_owned(),
        configured_by,
        tries: CHECK_RETRIES.len() + 1,
        waited: started.elapsed(),
        last_error: last,
    })
}

/// Starts the runtime with the defaults: the orchestrators and activities defined with the
/// macros, and the sidecar from `DURABLE_SIDECAR` or the embedded one (see
/// [`Runtime::builder`]).
///
/// ```no_run
/// # async fn demo() -> Result<(), durable::RuntimeError> {
/// let runtime = durable::run().await?;
/// let client = runtime.client();
/// # Ok(()) }
/// ```
pub async fn run() -> Result<RuntimeHandle, RuntimeError> {
    Runtime::builder().start().await
}

/// A running runtime: a worker, a client, and the embedded sidecar if one was started.
#[derive(Debug)]
pub struct RuntimeHandle {
    client: DurableClient,
    worker: WorkerHandle,
    endpoint: String,
    embedded: Option<EmbeddedGuard>,
    #[cfg(feature = "http")]
    http: Option<HttpServer>,
}

impl RuntimeHandle {
    /// Where the HTTP management API listens, when [`RuntimeBuilder::http`] enabled it.
    #[cfg(feature = "http")]
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().map(|h| h.addr)
    }

    /// A client of the runtime's sidecar.
    pub fn client(&self) -> DurableClient {
        self.client.clone()
    }

    /// The sidecar endpoint the runtime uses.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The worker's connection status.
    pub fn worker_status(&self) -> WorkerStatus {
        self.worker.status()
    }

    /// Waits until the worker is connected, at most `timeout`; returns whether it is.
    pub async fn wait_until_connected(&self, timeout: Duration) -> bool {
        self.worker.wait_connected(1, timeout).await
    }

    /// Stops the worker gracefully (running work may finish within the grace period), then
    /// the embedded sidecar, if any.
    pub async fn shutdown(self) {
        #[cfg(feature = "http")]
        if let Some(http) = self.http {
            http.shutdown().await;
        }
        self.worker.shutdown().await;
        if let Some(embedded) = self.embedded {
            embedded.shutdown().await;
        }
    }
}

/// The HTTP management API served beside the worker.
#[cfg(feature = "http")]
#[derive(Debug)]
struct HttpServer {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), crate::http::HttpError>>,
}

#[cfg(feature = "http")]
impl HttpServer {
    async fn start(
        addr: std::net::SocketAddr,
        client: DurableClient,
        options: crate::http::HttpOptions,
    ) -> Result<Self, RuntimeError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| RuntimeError::Http(format!("cannot listen on {addr}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| RuntimeError::Http(e.to_string()))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // The runtime knows what its worker registered: unknown names get 404 up front.
        let app = crate::http::router_with(client, options);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await?;
            Ok(())
        });
        Ok(Self { addr, stop, task })
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Ok(Err(e)) = self.task.await {
            tracing::warn!("the HTTP management API stopped with an error: {e}");
        }
    }
}

/// What the embedded sidecar needs to start.
#[derive(Debug)]
#[cfg_attr(not(feature = "embedded"), allow(dead_code))]
struct EmbeddedConfig {
    storage: EmbeddedStorage,
    #[cfg(feature = "embedded")]
    synchronous: crate::sidecar::Synchronous,
}

/// Keeps the embedded sidecar alive; shut down after the worker.
#[derive(Debug)]
struct EmbeddedGuard {
    #[cfg(feature = "embedded")]
    handle: crate::sidecar::SidecarHandle,
}

impl EmbeddedGuard {
    async fn shutdown(self) {
        #[cfg(feature = "embedded")]
        self.handle.shutdown().await;
    }
}

/// Without the `embedded` feature there is no sidecar to start: say how to get one.
#[cfg(not(feature = "embedded"))]
async fn start_embedded(_: &EmbeddedConfig) -> Result<(String, EmbeddedGuard), RuntimeError> {
    Err(RuntimeError::NoSidecar)
}

/// Starts the embedded sidecar on a free loopback port; returns its endpoint.
#[cfg(feature = "embedded")]
async fn start_embedded(config: &EmbeddedConfig) -> Result<(String, EmbeddedGuard), RuntimeError> {
    let builder = crate::sidecar::SidecarBuilder::new()
        .port(0)
        .synchronous(config.synchronous);
    let builder = match &config.storage {
        EmbeddedStorage::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    RuntimeError::Embedded(format!(
                        "cannot create the directory {} for the database: {e}",
                        dir.display()
                    ))
                })?;
            }
            builder.sqlite(path)
        }
        EmbeddedStorage::InMemory => builder.in_memory(),
        EmbeddedStorage::Postgres(url) => builder.postgres(url),
    };
    let handle = builder
        .start()
        .await
        .map_err(|e| RuntimeError::Embedded(e.to_string()))?;
    Ok((handle.endpoint(), EmbeddedGuard { handle }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_sidecar_fails_start_naming_the_address() {
        let err = Runtime::builder()
            .ignore_environment()
            .registry(Registry::new())
            .sidecar("http://127.0.0.1:1")
            .start()
            .await
            .expect_err("nothing listens on port 1");
        let message = err.to_string();
        assert!(
            matches!(err, RuntimeError::Unreachable { tries: 5, .. })
                && message.contains("cannot reach the sidecar at http://127.0.0.1:1 (set by RuntimeBuilder::sidecar)"),
            "{message}"
        );
        let runtime = Runtime::builder()
            .ignore_environment()
            .registry(Registry::new())
            .sidecar("http://127.0.0.1:1")
            .skip_sidecar_check()
            .start()
            .await
            .expect("no check: the worker connects later");
        runtime.shutdown().await;
    }

    #[tokio::test]
    async fn a_malformed_sidecar_address_is_refused_at_once() {
        for (endpoint, expected) in [
            ("bogus://x", "unknown scheme `bogus://`"),
            ("http://", "has no host"),
            (":4001", "has no host"),
        ] {
            let err = Runtime::builder()
                .ignore_environment()
                .registry(Registry::new())
                .sidecar(endpoint)
                .start()
                .await
                .expect_err(endpoint);
            assert!(err.to_string().contains(expected), "{endpoint}: {err}");
        }
    }

    #[cfg(feature = "embedded")]
    #[tokio::test]
    async fn two_programs_on_one_database_file_are_refused_clearly() {
        let dir = std::env::temp_dir().join(format!("durable-runtime-lock-{}", std::process::id()));
        let db = dir.join("app.db");
        let start = || {
            Runtime::builder()
                .ignore_environment()
                .registry(Registry::new())
                .database(&db)
                .start()
        };
        let first = start().await.expect("the first program starts");
        let err = start()
            .await
            .expect_err("the second program on the same file");
        let message = err.to_string();
        assert!(
            message.contains("in use by another durable sidecar")
                && message.contains(&format!("DURABLE_SIDECAR={} ", first.endpoint())),
            "{message}"
        );
        first.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(feature = "embedded")]
    #[tokio::test]
    async fn without_a_sidecar_an_embedded_one_starts() {
        let runtime = Runtime::builder()
            .ignore_environment()
            .registry(Registry::new())
            .in_memory()
            .start()
            .await
            .expect("the embedded sidecar starts");
        assert!(runtime.endpoint().starts_with("http://127.0.0.1:"));
        assert!(runtime.wait_until_connected(Duration::from_secs(10)).await);
        runtime.shutdown().await;
    }

    #[cfg(not(feature = "embedded"))]
    #[tokio::test]
    async fn without_the_embedded_feature_a_sidecar_address_is_required() {
        let err = Runtime::builder()
            .ignore_environment()
            .registry(Registry::new())
            .start()
            .await
            .expect_err("there is no sidecar to use");
        assert!(matches!(err, RuntimeError::NoSidecar), "{err}");
        let message = err.to_string();
        assert!(message.contains("DURABLE_SIDECAR"), "{message}");
        assert!(message.contains("`embedded` feature"), "{message}");
    }

    #[tokio::test]
    async fn bad_headers_fail_at_start() {
        let err = Runtime::builder()
            .ignore_environment()
            .registry(Registry::new())
            .sidecar("http://127.0.0.1:1")
            .header("no spaces allowed", "x")
            .start()
            .await
            .expect_err("the header name is invalid");
        assert!(matches!(err, RuntimeError::Connection(_)), "{err}");
    }
}
