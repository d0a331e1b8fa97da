//! An HTTP management API for orchestrations (the classic "async HTTP API" pattern) and
//! entities.
//!
//! The API is a thin [axum] layer **on top of the gRPC client**
//! (a [`DurableClient`](crate::DurableClient)), so it can sit in front of any Durable Task sidecar: the
//! embedded one, `durabletask-go`, Dapr, or the Python SDK's in-memory backend.
//!
//! A caller starts an orchestration and gets `202 Accepted` with a `Location` header and a set of
//! management URIs; it then polls the status URI, which answers `202 Accepted` while the instance
//! is not finished and `200 OK` once it reached a terminal state (`Completed`, `Failed`,
//! `Terminated`, `Canceled`).
//!
//! | method   | path                                              | success                   |
//! |----------|---------------------------------------------------|---------------------------|
//! | `POST`   | `/api/orchestrators/{name}[?instanceId=]`         | `202` + `Location`        |
//! | `GET`    | `/api/instances/{id}`                             | `202` running, `200` done |
//! | `POST`   | `/api/instances/{id}/raiseEvent/{eventName}`      | `202`                     |
//! | `POST`   | `/api/instances/{id}/terminate`                   | `202`                     |
//! | `POST`   | `/api/instances/{id}/suspend[?reason=]`           | `202`                     |
//! | `POST`   | `/api/instances/{id}/resume[?reason=]`            | `202`                     |
//! | `POST`   | `/api/instances/{id}/rewind[?reason=]`            | `202` (`409` not `Failed`) |
//! | `POST`   | `/api/instances/{id}/restart[?newInstanceId=]`    | `202` + `Location`        |
//! | `GET`    | `/api/instances/{id}/history`                     | `200` `{"events": [...]}` |
//! | `DELETE` | `/api/instances/{id}`                             | `200` (purged)            |
//! | `GET`    | `/api/instances[?status=&prefix=&name=&createdFrom=&createdTo=&pageSize=&continuationToken=]` | `200` |
//! | `POST`   | `/api/entities/{name}/{key}?op=OPERATION` (body: JSON input) | `202` (signalled) |
//! | `GET`    | `/api/entities/{name}/{key}`                      | `200` state, `404` none   |
//! | `GET`    | `/api/entities[?name=&prefix=&includeState=&includeTransient=&pageSize=&continuationToken=]` | `200` |
//! | `GET`    | `/` → `/dashboard/`: the web dashboard (see below)  | `200` HTML, JS, CSS       |
//! | `GET`    | `/healthz` (no token or host check: for probes)   | `200` `{"status":"ok"}`, `503` |
//!
//! Errors are JSON objects `{"error": "..."}` with a 4xx/5xx status; gRPC failures of the
//! sidecar are mapped as `NOT_FOUND`→404, `ALREADY_EXISTS`→409, `FAILED_PRECONDITION`→409,
//! `INVALID_ARGUMENT`→400, `UNAVAILABLE`→503, `DEADLINE_EXCEEDED`→504, `UNIMPLEMENTED`→501 and
//! anything else →502. See `docs/http-api.md` for the full reference and a curl session.
//!
//! **Dashboard.** `GET /dashboard/` serves a web page built into the binary (plain HTML,
//! JavaScript and CSS; no build step): the instance list with status, id-prefix, name and
//! age filters and paging, each instance's state and history as a timeline of its
//! activities, timers, sub-orchestrations and events, and buttons to raise an event,
//! suspend, resume, terminate, rewind, restart and purge; it refreshes itself every two
//! seconds. [`HttpOptions::dashboard`]`(false)` leaves it out.
//!
//! **Who may call it.** Requests must name a loopback host (`localhost`, `127.0.0.1`, `[::1]`)
//! in `Host` (and `X-Forwarded-Host`), or one added with [`HttpOptions::allow_host`]; others
//! get `421 Misdirected Request`, so a web page cannot drive a local API through DNS
//! rebinding. Requests other than `GET`/`HEAD`/`OPTIONS` that carry a browser's `Origin`
//! header must come from an allowed host too (`403` otherwise), so a page of another site
//! cannot make a browser terminate or purge instances. With [`HttpOptions::bearer_token`],
//! every request must carry `Authorization: Bearer <token>` (`401` otherwise), except the
//! dashboard's files: the page asks for the token and keeps it in the tab's `sessionStorage`.
//!
//! **Unknown orchestrators.** A sidecar does not know which orchestrators its workers registered,
//! so [`router`] accepts any name: starting an unregistered orchestrator succeeds, and the
//! instance then fails (status `Failed`, `failureDetails.errorType` like
//! `OrchestratorTaskNotFound`, depending on the worker SDK). Use [`router_with_orchestrators`]
//! to reject unknown names up front with `404`.
//!
//! ```no_run
//! # async fn run() -> Result<(), durable::http::HttpError> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! durable::http::serve(listener, "http://127.0.0.1:4001".to_string(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

mod access;
mod dashboard;
mod entities;
mod error;
mod handlers;
mod history;
mod model;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

/// Errors of [`serve`].
///
/// Failures of individual requests are never returned here: they become HTTP responses.
///
/// ```
/// let err = durable::http::HttpError::InvalidEndpoint {
///     endpoint: "::bad".into(),
///     message: "invalid uri".into(),
/// };
/// assert!(err.to_string().contains("::bad"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The sidecar endpoint is not a valid URI.
    #[error("invalid sidecar endpoint `{endpoint}`: {message}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was rejected.
        message: String,
    },
    /// Accepting or serving connections failed.
    #[error("HTTP server I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// How a router is served: allowed host names, an optional bearer token, and optionally the
/// orchestrator names that may be started.
///
/// ```
/// let options = durable::http::HttpOptions::new()
///     .allow_host("orders.internal")
///     .bearer_token("s3cret")
///     .orchestrators(vec!["order".to_string()]);
/// # let _ = options;
/// ```
#[derive(Clone, Default)]
pub struct HttpOptions {
    hosts: Vec<String>,
    token: Option<String>,
    orchestrators: Option<Vec<String>>,
    metrics: Option<MetricsSource>,
    no_dashboard: bool,
}

/// Renders the Prometheus text served at `/metrics`.
type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("hosts", &self.hosts)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("orchestrators", &self.orchestrators)
            .field("metrics", &self.metrics.is_some())
            .field("dashboard", &!self.no_dashboard)
            .finish()
    }
}

impl HttpOptions {
    /// Loopback hosts only, no token, any orchestrator name, with the dashboard.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also serves requests whose `Host` names `host` (any port); `"*"` allows every host
    /// (only behind a proxy that checks it).
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.hosts.push(host.into());
        self
    }

    /// Requires `Authorization: Bearer <token>` on every request.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Only these orchestrators may be started (`404` naming the known ones otherwise).
    pub fn orchestrators(mut self, names: Vec<String>) -> Self {
        self.orchestrators = Some(names);
        self
    }

    /// Serves `render()` at `GET /metrics` as Prometheus (OpenMetrics) text (e.g. an embedded sidecar's
    /// `SidecarHandle::metrics_source()`); without it `/metrics` is `404`.
    pub fn metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.metrics = Some(Arc::new(render));
        self
    }

    /// Whether `GET /` and `/dashboard/` serve the web dashboard (default `true`); without it
    /// they are `404`, e.g. when the router is merged into an app that has its own `/`.
    pub fn dashboard(mut self, enabled: bool) -> Self {
        self.no_dashboard = !enabled;
        self
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) client: crate::client::SidecarClient,
    /// `Some` = only these orchestrator names may be started.
    pub(crate) orchestrators: Option<Arc<[String]>>,
}

/// The HTTP management API as an [`axum::Router`], talking to a sidecar through `client` (with
/// its TLS settings and metadata headers, e.g. a task hub or an API token).
///
/// Any orchestrator name may be started (the sidecar cannot know what workers registered); see
/// [`router_with_orchestrators`] for an allow-list. The router can be nested into a larger
/// application or served with [`axum::serve()`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = durable::DurableClient::connect("http://127.0.0.1:4001").await?;
/// let app = durable::http::router(client);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// axum::serve(listener, app).await?;
/// # Ok(())
/// # }
/// ```
pub fn router(client: crate::DurableClient) -> Router {
    router_with(client, HttpOptions::new())
}

/// Like [`router`], but `POST /api/orchestrators/{name}` answers `404 Not Found`
/// (`{"error": "no orchestrator named X; known: a, b"}`) for names not in `names`.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = durable::DurableClient::connect("http://127.0.0.1:4001").await?;
/// let app = durable::http::router_with_orchestrators(
///     client,
///     vec!["greet".to_string(), "order".to_string()],
/// );
/// # let _: axum::Router = app;
/// # Ok(())
/// # }
/// ```
pub fn router_with_orchestrators(client: crate::DurableClient, names: Vec<String>) -> Router {
    router_with(client, HttpOptions::new().orchestrators(names))
}

/// The router with `options`: allowed hosts, a bearer token, known orchestrators, metrics,
/// the dashboard.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = durable::DurableClient::connect("http://127.0.0.1:4001").await?;
/// let options = durable::http::HttpOptions::new()
///     .allow_host("orders.internal")
///     .bearer_token(std::env::var("API_TOKEN")?);
/// let app = durable::http::router_with(client, options);
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
/// axum::serve(listener, app).await?;
/// # Ok(())
/// # }
/// ```
pub fn router_with(client: crate::DurableClient, options: HttpOptions) -> Router {
    let access = access::Access::new(&options.hosts, options.token, !options.no_dashboard);
    let state = AppState {
        client: client.sidecar(),
        orchestrators: options.orchestrators.map(Into::into),
    };
    // Probes send neither the token nor a loopback `Host`; the answer holds no data.
    let health = Router::new()
        .route("/healthz", get(handlers::health))
        .with_state(state.clone());
    let mut app = build(state);
    if !options.no_dashboard {
        app = app.merge(dashboard::routes());
    }
    if let Some(render) = options.metrics {
        app = app.route(
            "/metrics",
            get(move || {
                let text = render();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        );
    }
    app.layer(axum::middleware::from_fn_with_state(access, access::check))
        .merge(health)
}

fn build(state: AppState) -> Router {
    Router::new()
        .route("/api/orchestrators/{name}", post(handlers::start))
        .route("/api/instances", get(handlers::list))
        .route(
            "/api/instances/{id}",
            get(handlers::status).delete(handlers::purge),
        )
        .route(
            "/api/instances/{id}/raiseEvent/{event_name}",
            post(handlers::raise_event),
        )
        .route("/api/instances/{id}/terminate", post(handlers::terminate))
        .route("/api/instances/{id}/suspend", post(handlers::suspend))
        .route("/api/instances/{id}/resume", post(handlers::resume))
        .route("/api/instances/{id}/rewind", post(handlers::rewind))
        .route("/api/instances/{id}/restart", post(handlers::restart))
        .route("/api/instances/{id}/history", get(handlers::history))
        .route("/api/entities", get(entities::list))
        .route(
            "/api/entities/{name}/{key}",
            get(entities::get).post(entities::signal),
        )
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .with_state(state)
}

/// Serves the HTTP API on `listener` in front of the sidecar at `sidecar_endpoint` until
/// `shutdown` completes.
///
/// The gRPC channel connects lazily: the server starts even if the sidecar is not up yet, and
/// requests answer `503 Service Unavailable` until it is. `sidecar_endpoint` may omit the scheme
/// (`127.0.0.1:4001` means `http://127.0.0.1:4001`).
///
/// ```no_run
/// # async fn run() -> Result<(), durable::http::HttpError> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// println!("HTTP API on http://{}", listener.local_addr()?);
/// durable::http::serve(listener, "127.0.0.1:4001".to_string(), async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await?;
/// # Ok(())
/// # }
/// ```
pub async fn serve(
    listener: tokio::net::TcpListener,
    sidecar_endpoint: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    let options = crate::client::ConnectOptions::new(sidecar_endpoint.clone());
    let client =
        crate::DurableClient::connect_lazy(&options).map_err(|e| HttpError::InvalidEndpoint {
            endpoint: sidecar_endpoint,
            message: e.to_string(),
        })?;
    serve_with(listener, client, shutdown).await
}

/// Serves the HTTP API on `listener` through `client` (use this to keep the client's TLS
/// settings and metadata headers) until `shutdown` completes.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let options = durable::client::ConnectOptions::new("https://sidecar.example:443")
///     .header("authorization", "Bearer <token>");
/// let client = durable::DurableClient::connect_lazy(&options)?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// durable::http::serve_with(listener, client, async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await?;
/// # Ok(())
/// # }
/// ```
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    client: crate::DurableClient,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    serve_with_options(listener, client, HttpOptions::new(), shutdown).await
}

/// Like [`serve_with`], with [`HttpOptions`] (allowed hosts, a bearer token).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = durable::DurableClient::connect_lazy(
///     &durable::client::ConnectOptions::new("http://127.0.0.1:4001"),
/// )?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let options = durable::http::HttpOptions::new().bearer_token("s3cret");
/// durable::http::serve_with_options(listener, client, options, async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await?;
/// # Ok(())
/// # }
/// ```
pub async fn serve_with_options(
    listener: tokio::net::TcpListener,
    client: crate::DurableClient,
    options: HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    axum::serve(listener, router_with(client, options))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_endpoint_is_reported() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let result = serve(listener, "http://bad host:1".to_string(), async {}).await;
        assert!(
            matches!(result, Err(HttpError::InvalidEndpoint { .. })),
            "{result:?}"
        );
    }
}
