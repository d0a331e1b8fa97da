//! The management client: start, inspect, wait for, signal and clean up orchestrations, and
//! signal, read, query and clean up entities.
//!
//! [`DurableClient`] speaks the Durable Task gRPC protocol to any sidecar (the embedded one,
//! durabletask-go, the Python SDK's in-memory backend, Durable Task Scheduler). Payloads are
//! JSON; typed helpers serialize inputs and deserialize outputs with serde.
//!
//! ```no_run
//! # async fn demo() -> Result<(), durable::client::ClientError> {
//! use std::time::Duration;
//! use durable::client::DurableClient;
//!
//! let client = DurableClient::connect("http://127.0.0.1:4001").await?;
//! let id = client.schedule_new_orchestration_by_name("sequence", &"Tokyo", Default::default()).await?;
//! let state = client.wait_for_orchestration_completion(&id, Duration::from_secs(30)).await?;
//! let greetings: Vec<String> = state.output()?;
//! # Ok(()) }
//! ```

mod entities;
mod transport;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::convert::{to_datetime, to_timestamp};
use crate::error::FailureDetails;
use crate::input::IntoInput;
use crate::orchestration::Orchestrator;
use crate::proto;

pub use entities::{CleanEntityStorageResult, EntityMetadata, EntityQuery, EntityState};

pub(crate) use transport::SidecarClient;

/// Errors of [`DurableClient`] calls, by what the caller can do about them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The instance does not exist (gRPC `NOT_FOUND`).
    #[error("not found: {0}")]
    NotFound(String),
    /// An instance with this id already exists (gRPC `ALREADY_EXISTS`).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A wait did not finish within its timeout (gRPC `DEADLINE_EXCEEDED` or the local timer).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The instance is not in a state that allows the operation (gRPC `FAILED_PRECONDITION`),
    /// e.g. rewinding an instance that did not fail.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The request was rejected as malformed (gRPC `INVALID_ARGUMENT`), or a local argument
    /// (endpoint, metadata header) is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The sidecar cannot be reached or is going away (gRPC `UNAVAILABLE`); retryable.
    #[error("sidecar unavailable: {0}")]
    Unavailable(String),
    /// The connection could not be set up (DNS, TCP, TLS).
    #[error("{}", with_causes(.0))]
    Transport(#[from] tonic::transport::Error),
    /// An input did not serialize, or a payload did not deserialize into the requested type.
    #[error("serialization error: {0}")]
    Serialization(String),
    /// The sidecar does not implement this operation (gRPC `UNIMPLEMENTED`).
    #[error("not supported by the sidecar: {0}")]
    Unimplemented(String),
    /// Any other gRPC error.
    #[error("gRPC error: {0}")]
    Rpc(Status),
}

impl ClientError {
    /// `true` for errors that may go away when the call is repeated later
    /// ([`Unavailable`](Self::Unavailable), [`Transport`](Self::Transport),
    /// [`Timeout`](Self::Timeout)).
    ///
    /// ```
    /// use durable::client::ClientError;
    /// assert!(ClientError::Unavailable("restarting".into()).is_retryable());
    /// assert!(!ClientError::NotFound("x".into()).is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::Unavailable(_) | ClientError::Transport(_) | ClientError::Timeout(_)
        )
    }
}

impl From<Status> for ClientError {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::NotFound => ClientError::NotFound(message),
            Code::AlreadyExists => ClientError::AlreadyExists(message),
            Code::DeadlineExceeded => ClientError::Timeout(message),
            Code::FailedPrecondition => ClientError::FailedPrecondition(message),
            Code::InvalidArgument => ClientError::InvalidArgument(message),
            Code::Unavailable => ClientError::Unavailable(message),
            Code::Unimplemented => ClientError::Unimplemented(message),
            _ => ClientError::Rpc(status),
        }
    }
}

/// An error with its causes (`transport error: tcp connect error: Connection refused`): the
/// transport's own message alone says nothing.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Whether a call failed because the connection to the sidecar went away (it restarts):
/// `UNAVAILABLE`, or an HTTP/2 error of the transport (a `GOAWAY` under a call in flight
/// surfaces as `INTERNAL`).
fn connection_lost(status: &Status) -> bool {
    status.code() == Code::Unavailable
        || (status.code() == Code::Internal
            && std::error::Error::source(status).is_some_and(|e| e.is::<tonic::transport::Error>()))
}

/// Adds fixed metadata headers (API token, task hub, ...) to every call.
#[derive(Clone, Default)]
pub(crate) struct MetadataInterceptor {
    headers: Arc<Vec<(AsciiMetadataKey, AsciiMetadataValue)>>,
}

impl Interceptor for MetadataInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        for (key, value) in self.headers.iter() {
            request.metadata_mut().insert(key.clone(), value.clone());
        }
        Ok(request)
    }
}

/// How to reach a sidecar: endpoint, metadata headers and TLS.
///
/// The endpoint scheme chooses the transport, as the other SDKs do: `http://` and `grpc://`
/// are plaintext, `https://` and `grpcs://` use TLS (server certificates are checked against
/// the Mozilla root store, plus any CA given with
/// [`tls_ca_certificate`](Self::tls_ca_certificate)); a bare `host:port` is plaintext.
///
/// ```
/// use durable::client::ConnectOptions;
/// let options = ConnectOptions::new("https://my-scheduler.westus.durabletask.io")
///     .task_hub("orders")
///     .header("authorization", "Bearer TOKEN");
/// assert_eq!(options.endpoint(), "https://my-scheduler.westus.durabletask.io");
/// ```
#[derive(Clone)]
pub struct ConnectOptions {
    endpoint: String,
    headers: Vec<(String, String)>,
    ca_certificate: Option<Vec<u8>>,
    tls_domain: Option<String>,
    connect_timeout: Duration,
    /// The embedded sidecar's service, called in-process instead of over `endpoint`.
    in_process: Option<Arc<proto::SidecarService>>,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values may be secrets (API tokens): show names only.
        f.debug_struct("ConnectOptions")
            .field("endpoint", &self.endpoint)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("ca_certificate", &self.ca_certificate.is_some())
            .field("tls_domain", &self.tls_domain)
            .field("connect_timeout", &self.connect_timeout)
            .field("in_process", &self.in_process.is_some())
            .finish()
    }
}

impl ConnectOptions {
    /// Options for the sidecar at `endpoint` (e.g. `http://127.0.0.1:4001`).
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            headers: Vec::new(),
            ca_certificate: None,
            tls_domain: None,
            connect_timeout: Duration::from_secs(10),
            in_process: None,
        }
    }

    /// Calls `service` in this process (the embedded sidecar) instead of connecting to the
    /// endpoint, which stays the sidecar's address for other processes.
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub(crate) fn in_process(mut self, service: Arc<proto::SidecarService>) -> Self {
        self.in_process = Some(service);
        self
    }

    /// The endpoint as given.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The same options for another endpoint.
    pub fn endpoint_replaced(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// Sends `taskhub: <name>` on every call (required by Durable Task Scheduler).
    pub fn task_hub(self, name: impl Into<String>) -> Self {
        self.header("taskhub", name)
    }

    /// Sends a metadata header on every call (e.g. `authorization`, `dapr-api-token`).
    /// Names are lowercased; a later header with the same name replaces an earlier one.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into().to_ascii_lowercase();
        self.headers.retain(|(k, _)| *k != name);
        self.headers.push((name, value.into()));
        self
    }

    /// Trusts this PEM-encoded CA certificate (in addition to the public roots) for TLS.
    pub fn tls_ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certificate = Some(pem.into());
        self
    }

    /// Checks the server certificate against this name instead of the endpoint's host.
    pub fn tls_domain_name(mut self, name: impl Into<String>) -> Self {
        self.tls_domain = Some(name.into());
        self
    }

    /// How long to wait for a TCP (and TLS) connection; 10 s by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The endpoint as a URI tonic accepts, and whether it asks for TLS.
    /// Refuses an endpoint with a scheme gRPC cannot use, or without a host.
    fn check_scheme(&self) -> Result<(), ClientError> {
        let endpoint = self.endpoint.trim();
        let rest = match endpoint.split_once("://") {
            Some((scheme, rest)) => {
                if !["http", "https", "grpc", "grpcs"].contains(&scheme) {
                    return Err(ClientError::InvalidArgument(format!(
                        "sidecar endpoint `{endpoint}`: unknown scheme `{scheme}://`; use http://host:port (or https:// for TLS)"
                    )));
                }
                rest
            }
            None => endpoint,
        };
        if rest.is_empty() || rest.starts_with(':') || rest.starts_with('/') {
            return Err(ClientError::InvalidArgument(format!(
                "sidecar endpoint `{endpoint}` has no host; use http://host:port, e.g. http://127.0.0.1:4001"
            )));
        }
        Ok(())
    }

    fn uri(&self) -> (String, bool) {
        let endpoint = self.endpoint.trim();
        let schemes = [
            ("http://", "http://", false),
            ("grpc://", "http://", false),
            ("https://", "https://", true),
            ("grpcs://", "https://", true),
        ];
        for (prefix, replacement, tls) in schemes {
            if let Some(rest) = endpoint.strip_prefix(prefix) {
                return (format!("{replacement}{rest}"), tls);
            }
        }
        (format!("http://{endpoint}"), false)
    }

    fn channel_endpoint(&self) -> Result<Endpoint, ClientError> {
        self.check_scheme()?;
        let (uri, tls) = self.uri();
        let mut endpoint = Endpoint::from_shared(uri.clone()).map_err(|e| {
            ClientError::InvalidArgument(format!("sidecar endpoint `{}`: {e}", self.endpoint))
        })?;
        endpoint = endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        if tls || self.ca_certificate.is_some() {
            let mut config = ClientTlsConfig::new().with_enabled_roots();
            if let Some(pem) = &self.ca_certificate {
                config = config.ca_certificate(Certificate::from_pem(pem));
            }
            if let Some(domain) = &self.tls_domain {
                config = config.domain_name(domain.clone());
            }
            endpoint = endpoint.tls_config(config)?;
        }
        Ok(endpoint)
    }

    pub(crate) fn interceptor(&self) -> Result<MetadataInterceptor, ClientError> {
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let key = AsciiMetadataKey::from_bytes(name.as_bytes()).map_err(|e| {
                ClientError::InvalidArgument(format!("metadata header name `{name}`: {e}"))
            })?;
            let value = AsciiMetadataValue::try_from(value.as_str()).map_err(|e| {
                ClientError::InvalidArgument(format!("metadata header `{name}` value: {e}"))
            })?;
            headers.push((key, value));
        }
        Ok(MetadataInterceptor {
            headers: Arc::new(headers),
        })
    }

    /// Whether calls go to a sidecar in this process, without gRPC.
    pub(crate) fn is_in_process(&self) -> bool {
        self.in_process.is_some()
    }

    /// Connects now (fails if the sidecar is not reachable).
    pub(crate) async fn connect_client(&self) -> Result<SidecarClient, ClientError> {
        if let Some(service) = &self.in_process {
            return Ok(SidecarClient::in_process(Arc::clone(service)));
        }
        let interceptor = self.interceptor()?;
        let channel = self.channel_endpoint()?.connect().await?;
        Ok(SidecarClient::grpc(channel, interceptor))
    }

    /// Connects on first use.
    pub(crate) fn connect_client_lazy(&self) -> Result<SidecarClient, ClientError> {
        if let Some(service) = &self.in_process {
            return Ok(SidecarClient::in_process(Arc::clone(service)));
        }
        let interceptor = self.interceptor()?;
        let channel = self.channel_endpoint()?.connect_lazy();
        Ok(SidecarClient::grpc(channel, interceptor))
    }
}

/// The runtime status of an orchestration instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RuntimeStatus {
    /// Scheduled but not started yet.
    Pending,
    /// Started and not finished.
    Running,
    /// Finished successfully.
    Completed,
    /// Restarted itself with new input (a transient state).
    ContinuedAsNew,
    /// Finished with a failure; see [`OrchestrationState::failure_details`].
    Failed,
    /// Canceled (not used by most sidecars).
    Canceled,
    /// Terminated by a client.
    Terminated,
    /// Suspended by a client; resumes with [`DurableClient::resume_orchestration`].
    Suspended,
}

impl RuntimeStatus {
    /// `true` for statuses an instance never leaves on its own: completed, failed, canceled,
    /// terminated.
    ///
    /// ```
    /// use durable::client::RuntimeStatus;
    /// assert!(RuntimeStatus::Failed.is_terminal());
    /// assert!(!RuntimeStatus::Suspended.is_terminal());
    /// ```
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RuntimeStatus::Completed
                | RuntimeStatus::Failed
                | RuntimeStatus::Canceled
                | RuntimeStatus::Terminated
        )
    }

    fn from_wire(value: i32) -> Self {
        use proto::OrchestrationStatus as S;
        match S::try_from(value) {
            Ok(S::Running) => RuntimeStatus::Running,
            Ok(S::Completed) => RuntimeStatus::Completed,
            Ok(S::ContinuedAsNew) => RuntimeStatus::ContinuedAsNew,
            Ok(S::Failed) => RuntimeStatus::Failed,
            Ok(S::Canceled) => RuntimeStatus::Canceled,
            Ok(S::Terminated) => RuntimeStatus::Terminated,
            Ok(S::Suspended) => RuntimeStatus::Suspended,
            Ok(S::Pending) | Err(_) => RuntimeStatus::Pending,
        }
    }

    fn to_wire(self) -> i32 {
        use proto::OrchestrationStatus as S;
        let status = match self {
            RuntimeStatus::Pending => S::Pending,
            RuntimeStatus::Running => S::Running,
            RuntimeStatus::Completed => S::Completed,
            RuntimeStatus::ContinuedAsNew => S::ContinuedAsNew,
            RuntimeStatus::Failed => S::Failed,
            RuntimeStatus::Canceled => S::Canceled,
            RuntimeStatus::Terminated => S::Terminated,
            RuntimeStatus::Suspended => S::Suspended,
        };
        status as i32
    }
}

/// A snapshot of an orchestration instance, as the sidecar reports it.
///
/// Payloads are kept as raw JSON; [`input`](Self::input), [`output`](Self::output) and
/// [`custom_status`](Self::custom_status) deserialize them.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OrchestrationState {
    /// The instance id.
    pub instance_id: String,
    /// The orchestrator name.
    pub name: String,
    /// The orchestrator version, if one was given.
    pub version: Option<String>,
    /// The runtime status.
    pub runtime_status: RuntimeStatus,
    /// When the instance was created.
    pub created_at: DateTime<Utc>,
    /// When the instance last changed.
    pub last_updated_at: DateTime<Utc>,
    /// When a delayed start was scheduled for, if any.
    pub scheduled_start_at: Option<DateTime<Utc>>,
    /// When the instance finished, if the sidecar reports it.
    pub completed_at: Option<DateTime<Utc>>,
    /// The current execution id (changes with continue-as-new).
    pub execution_id: Option<String>,
    /// The parent instance, for sub-orchestrations.
    pub parent_instance_id: Option<String>,
    /// The input as JSON text (absent when not fetched or not given).
    pub serialized_input: Option<String>,
    /// The output as JSON text.
    pub serialized_output: Option<String>,
    /// The custom status as JSON text.
    pub serialized_custom_status: Option<String>,
    /// Why the instance failed, when [`runtime_status`](Self::runtime_status) is `Failed`.
    pub failure_details: Option<FailureDetails>,
    /// Tags given at scheduling.
    pub tags: HashMap<String, String>,
}

impl OrchestrationState {
    /// The input, deserialized (absent reads as JSON `null`).
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        decode("input", self.serialized_input.as_deref())
    }

    /// The output, deserialized (absent reads as JSON `null`).
    ///
    /// ```
    /// # fn demo(state: durable::client::OrchestrationState) -> Result<(), durable::client::ClientError> {
    /// let greetings: Vec<String> = state.output()?;
    /// # Ok(()) }
    /// ```
    ///
    /// A failed instance has no output: this returns [`ClientError::FailedPrecondition`] with
    /// its failure (also in [`OrchestrationState::failure_details`]).
    pub fn output<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        if self.runtime_status == RuntimeStatus::Failed && self.serialized_output.is_none() {
            let failure = self.failure_details.as_ref().map_or_else(
                || "no failure details".to_owned(),
                |f| format!("{}: {}", f.error_type, f.message),
            );
            return Err(ClientError::FailedPrecondition(format!(
                "orchestration instance '{}' failed ({failure}), so it has no output; read failure_details",
                self.instance_id
            )));
        }
        decode("output", self.serialized_output.as_deref())
    }

    /// The custom status, deserialized (absent reads as JSON `null`).
    pub fn custom_status<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        decode("custom status", self.serialized_custom_status.as_deref())
    }

    fn from_wire(state: proto::OrchestrationState) -> Self {
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        let optional_time = |t: Option<prost_types::Timestamp>| {
            t.filter(|t| t.seconds != 0 || t.nanos != 0)
                .map(|t| to_datetime(Some(&t)))
        };
        Self {
            instance_id: state.instance_id,
            name: state.name,
            version: non_empty(state.version),
            runtime_status: RuntimeStatus::from_wire(state.orchestration_status),
            created_at: to_datetime(state.created_timestamp.as_ref()),
            last_updated_at: to_datetime(state.last_updated_timestamp.as_ref()),
            scheduled_start_at: optional_time(state.scheduled_start_timestamp),
            completed_at: optional_time(state.completed_timestamp),
            execution_id: non_empty(state.execution_id),
            parent_instance_id: non_empty(state.parent_instance_id),
            serialized_input: state.input,
            serialized_output: state.output,
            serialized_custom_status: state.custom_status,
            failure_details: state.failure_details.as_ref().map(FailureDetails::from),
            tags: state.tags,
        }
    }
}

fn decode<T: DeserializeOwned>(what: &str, json: Option<&str>) -> Result<T, ClientError> {
    serde_json::from_str(crate::convert::json_or_null(json)).map_err(|e| {
        ClientError::Serialization(format!(
            "the {what} does not deserialize into `{}`: {e}",
            std::any::type_name::<T>()
        ))
    })
}

fn encode<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<String, ClientError> {
    serde_json::to_string(value)
        .map_err(|e| ClientError::Serialization(format!("the {what} does not serialize: {e}")))
}

/// Options for scheduling a new orchestration.
///
/// ```
/// use durable::client::ScheduleOptions;
/// let options = ScheduleOptions::new()
///     .instance_id("order-42")
///     .start_at(chrono::Utc::now() + chrono::Duration::minutes(5))
///     .tag("tenant", "acme");
/// assert_eq!(options.instance_id.as_deref(), Some("order-42"));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ScheduleOptions {
    /// The instance id; a random UUID (hex) when absent.
    pub instance_id: Option<String>,
    /// Start no earlier than this time (delayed start); now when absent.
    pub start_at: Option<DateTime<Utc>>,
    /// The orchestrator version to record.
    pub version: Option<String>,
    /// Tags stored with the instance.
    pub tags: HashMap<String, String>,
}

impl ScheduleOptions {
    /// Default options: random id, start now, no version, no tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses this instance id.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// Starts the orchestration at this time.
    pub fn start_at(mut self, time: DateTime<Utc>) -> Self {
        self.start_at = Some(time);
        self
    }

    /// Records this orchestrator version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }
}

/// A filter for [`DurableClient::query_orchestrations`]; empty fields match everything.
///
/// ```
/// use durable::client::{OrchestrationQuery, RuntimeStatus};
/// let query = OrchestrationQuery::new()
///     .status(RuntimeStatus::Completed)
///     .instance_id_prefix("order-")
///     .page_size(50);
/// assert_eq!(query.page_size, Some(50));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct OrchestrationQuery {
    /// Only instances with one of these statuses (empty = any).
    pub statuses: Vec<RuntimeStatus>,
    /// Only instances created at or after this time.
    pub created_from: Option<DateTime<Utc>>,
    /// Only instances created before this time.
    pub created_to: Option<DateTime<Utc>>,
    /// Only instances whose id starts with this prefix.
    pub instance_id_prefix: Option<String>,
    /// At most this many instances per page (the sidecar's default when absent).
    pub page_size: Option<u32>,
    /// The token of the page to fetch, from [`QueryPage::continuation_token`].
    pub continuation_token: Option<String>,
    /// Include inputs, outputs and custom status.
    pub fetch_inputs_and_outputs: bool,
}

impl OrchestrationQuery {
    /// A query matching every instance.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a status to match.
    pub fn status(mut self, status: RuntimeStatus) -> Self {
        self.statuses.push(status);
        self
    }

    /// Only instances created in `[from, to)`.
    pub fn created_between(mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        self.created_from = Some(from);
        self.created_to = Some(to);
        self
    }

    /// Only instances whose id starts with `prefix`.
    pub fn instance_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.instance_id_prefix = Some(prefix.into());
        self
    }

    /// At most `size` instances per page.
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = Some(size);
        self
    }

    /// Fetches the page after the one that returned `token`.
    pub fn continuation_token(mut self, token: impl Into<String>) -> Self {
        self.continuation_token = Some(token.into());
        self
    }

    /// Includes inputs, outputs and custom status in the results.
    pub fn fetch_inputs_and_outputs(mut self, fetch: bool) -> Self {
        self.fetch_inputs_and_outputs = fetch;
        self
    }
}

/// One page of results.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass this back to fetch the next page; `None` on the last page.
    pub continuation_token: Option<String>,
}

/// A page of [`OrchestrationState`]s.
pub type QueryPage = Page<OrchestrationState>;

/// A filter for [`DurableClient::list_instance_ids`] (by completion time, for cleanup jobs).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct InstanceIdFilter {
    /// Only instances with one of these (terminal) statuses (empty = any).
    pub statuses: Vec<RuntimeStatus>,
    /// Only instances completed at or after this time.
    pub completed_from: Option<DateTime<Utc>>,
    /// Only instances completed before this time.
    pub completed_to: Option<DateTime<Utc>>,
    /// At most this many ids per page.
    pub page_size: Option<u32>,
    /// The cursor from the previous page.
    pub continuation_token: Option<String>,
}

impl InstanceIdFilter {
    /// A filter matching every finished instance.
    ///
    /// ```
    /// let filter = durable::client::InstanceIdFilter::new().page_size(100);
    /// assert_eq!(filter.page_size, Some(100));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a status to match.
    pub fn status(mut self, status: RuntimeStatus) -> Self {
        self.statuses.push(status);
        self
    }

    /// Only instances completed in `[from, to)`.
    pub fn completed_between(mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        self.completed_from = Some(from);
        self.completed_to = Some(to);
        self
    }

    /// At most `size` ids per page.
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = Some(size);
        self
    }

    /// Fetches the page after the one that returned `token`.
    pub fn continuation_token(mut self, token: impl Into<String>) -> Self {
        self.continuation_token = Some(token.into());
        self
    }
}

/// A filter for [`DurableClient::purge_orchestrations`]; only terminal instances are purged.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct PurgeFilter {
    /// Only instances created at or after this time.
    pub created_from: Option<DateTime<Utc>>,
    /// Only instances created before this time.
    pub created_to: Option<DateTime<Utc>>,
    /// Only instances with one of these statuses (empty = all terminal statuses).
    pub statuses: Vec<RuntimeStatus>,
}

impl PurgeFilter {
    /// A filter matching every finished instance.
    ///
    /// ```
    /// use durable::client::{PurgeFilter, RuntimeStatus};
    /// let filter = PurgeFilter::new().status(RuntimeStatus::Completed);
    /// assert_eq!(filter.statuses, [RuntimeStatus::Completed]);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a status to match.
    pub fn status(mut self, status: RuntimeStatus) -> Self {
        self.statuses.push(status);
        self
    }

    /// Only instances created in `[from, to)`.
    pub fn created_between(mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        self.created_from = Some(from);
        self.created_to = Some(to);
        self
    }
}

/// What a purge did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PurgeResult {
    /// How many instances were deleted.
    pub deleted_instance_count: u32,
    /// `Some(false)` when the sidecar stopped early and more instances match (call again).
    pub is_complete: Option<bool>,
}

/// The management client of a Durable Task sidecar.
///
/// Cheap to clone (clones share one HTTP/2 connection).
///
/// ```no_run
/// # async fn demo() -> Result<(), durable::client::ClientError> {
/// use durable::client::{DurableClient, RuntimeStatus};
/// let client = DurableClient::connect("http://127.0.0.1:4001").await?;
/// client.raise_orchestration_event("order-42", "approval", &true).await?;
/// if let Some(state) = client.get_orchestration_state("order-42").await? {
///     assert_eq!(state.runtime_status, RuntimeStatus::Running);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DurableClient {
    inner: SidecarClient,
}

impl fmt::Debug for DurableClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableClient").finish_non_exhaustive()
    }
}

impl DurableClient {
    /// Connects to the sidecar at `endpoint` (e.g. `http://127.0.0.1:4001`).
    pub async fn connect(endpoint: impl Into<String>) -> Result<Self, ClientError> {
        Self::connect_with(&ConnectOptions::new(endpoint)).await
    }

    /// Connects with headers and TLS settings.
    pub async fn connect_with(options: &ConnectOptions) -> Result<Self, ClientError> {
        Ok(Self {
            inner: options.connect_client().await?,
        })
    }

    /// The underlying gRPC client (with the connection's metadata interceptor).
    #[cfg(feature = "http")]
    pub(crate) fn sidecar(&self) -> SidecarClient {
        self.inner.clone()
    }

    /// A client that connects on its first call (never fails up front for an unreachable
    /// sidecar; calls fail with [`ClientError::Unavailable`] until it is up).
    pub fn connect_lazy(options: &ConnectOptions) -> Result<Self, ClientError> {
        Ok(Self {
            inner: options.connect_client_lazy()?,
        })
    }

    /// A client over an existing channel (no extra headers).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:4001").connect_lazy();
    /// let client = durable::client::DurableClient::from_channel(channel);
    /// # }
    /// ```
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            inner: SidecarClient::grpc(channel, MetadataInterceptor::default()),
        }
    }

    /// A client over an existing channel, adding the headers of `options` to every call.
    pub fn from_channel_with(
        channel: Channel,
        options: &ConnectOptions,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            inner: SidecarClient::grpc(channel, options.interceptor()?),
        })
    }

    /// Checks that the sidecar answers (`Hello`).
    pub async fn hello(&self) -> Result<(), ClientError> {
        self.inner.clone().hello(()).await?;
        Ok(())
    }

    /// Schedules a new instance of an orchestrator with a typed input; returns its instance id.
    ///
    /// ```no_run
    /// # use durable::{Orchestrator, OrchestrationContext};
    /// # #[derive(Clone, Copy)] struct Sequence;
    /// # impl Orchestrator for Sequence {
    /// #     type Input = String; type Output = Vec<String>; const NAME: &'static str = "sequence";
    /// #     fn run(_: OrchestrationContext, _: String) -> futures::future::LocalBoxFuture<'static, durable::Result<Vec<String>>> { Box::pin(async { Ok(vec![]) }) }
    /// # }
    /// # async fn demo(client: durable::client::DurableClient) -> Result<(), durable::client::ClientError> {
    /// let id = client.schedule_new_orchestration(Sequence, "Tokyo").await?;
    /// # Ok(()) }
    /// ```
    pub fn schedule_new_orchestration<O: Orchestrator>(
        &self,
        orchestrator: O,
        input: impl IntoInput<O::Input>,
    ) -> BoxFuture<'_, Result<String, ClientError>> {
        self.schedule_new_orchestration_with(orchestrator, input, ScheduleOptions::new())
    }

    /// Like [`schedule_new_orchestration`](Self::schedule_new_orchestration), with options.
    // Not an `async fn`: the input is converted before the future exists and the future's type
    // does not mention it, so a wrong input type is reported once, at the argument, rather than
    // again at every use of the future.
    pub fn schedule_new_orchestration_with<O: Orchestrator>(
        &self,
        _orchestrator: O,
        input: impl IntoInput<O::Input>,
        options: ScheduleOptions,
    ) -> BoxFuture<'_, Result<String, ClientError>> {
        let input = encode("orchestration input", &input.into_input());
        Box::pin(async move { self.start_instance(O::NAME, input?, options).await })
    }

    /// Schedules an orchestrator by name (one registered in another SDK or crate).
    pub async fn schedule_new_orchestration_by_name<I: Serialize + ?Sized>(
        &self,
        name: &str,
        input: &I,
        options: ScheduleOptions,
    ) -> Result<String, ClientError> {
        let input = encode("orchestration input", input)?;
        self.start_instance(name, input, options).await
    }

    /// Starts an instance of `name` with its input already JSON.
    async fn start_instance(
        &self,
        name: &str,
        input: String,
        options: ScheduleOptions,
    ) -> Result<String, ClientError> {
        let instance_id = options
            .instance_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let (span, trace) =
            crate::telemetry::create_orchestration(name, options.version.as_deref(), &instance_id);
        let request = proto::CreateInstanceRequest {
            instance_id,
            name: name.to_owned(),
            version: options.version,
            input: Some(input),
            scheduled_start_timestamp: options.start_at.map(to_timestamp),
            tags: options.tags,
            request_time: Some(to_timestamp(Utc::now())),
            parent_trace_context: trace,
            ..Default::default()
        };
        let result = self.inner.clone().start_instance(request).await;
        crate::telemetry::end(&span, result.as_ref().err().map(|s| s.message()));
        Ok(result?.into_inner().instance_id)
    }

    /// The current state of an instance with its payloads; `None` if it does not exist.
    pub async fn get_orchestration_state(
        &self,
        instance_id: &str,
    ) -> Result<Option<OrchestrationState>, ClientError> {
        let request = proto::GetInstanceRequest {
            instance_id: instance_id.to_owned(),
            get_inputs_and_outputs: true,
        };
        let response = self.inner.clone().get_instance(request).await?.into_inner();
        Ok(existing_state(response))
    }

    /// Waits until the instance has started (left `Pending`), at most `timeout`.
    pub async fn wait_for_orchestration_start(
        &self,
        instance_id: &str,
        timeout: Duration,
    ) -> Result<OrchestrationState, ClientError> {
        self.wait(instance_id, timeout, false).await
    }

    /// Waits until the instance has finished (completed, failed or terminated), at most
    /// `timeout`, and returns its final state with payloads.
    pub async fn wait_for_orchestration_completion(
        &self,
        instance_id: &str,
        timeout: Duration,
    ) -> Result<OrchestrationState, ClientError> {
        self.wait(instance_id, timeout, true).await
    }

    /// Long-polls the sidecar until the instance starts or completes, at most `timeout`. A
    /// sidecar that is briefly unreachable (restarting, say) is asked again with backoff
    /// until the timeout, so a wait rides out a sidecar restart.
    async fn wait(
        &self,
        instance_id: &str,
        timeout: Duration,
        completion: bool,
    ) -> Result<OrchestrationState, ClientError> {
        // A year stands for "forever" (`Duration::MAX`).
        let timeout = timeout.min(Duration::from_secs(365 * 24 * 3600));
        let deadline = tokio::time::Instant::now() + timeout;
        let what = if completion { "complete" } else { "start" };
        let timed_out = || {
            ClientError::Timeout(format!(
                "instance `{instance_id}` did not {what} within {timeout:?}"
            ))
        };
        let mut backoff = Duration::from_millis(100);
        let response = loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(timed_out());
            }
            let mut request = tonic::Request::new(proto::GetInstanceRequest {
                instance_id: instance_id.to_owned(),
                get_inputs_and_outputs: true,
            });
            // The deadline tells the sidecar how long to hold the call; the local timer
            // guards against sidecars that ignore it.
            request.set_timeout(remaining);
            let mut client = self.inner.clone();
            let call = async move {
                if completion {
                    client.wait_for_instance_completion(request).await
                } else {
                    client.wait_for_instance_start(request).await
                }
            };
            match tokio::time::timeout(remaining.saturating_add(Duration::from_secs(1)), call).await
            {
                Err(_) => return Err(timed_out()),
                // A call cut short before the wait's own deadline (a sidecar shutting down
                // resets its streams; some sidecars cap a long poll) is asked again.
                Ok(Err(status))
                    if matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled)
                        && tokio::time::Instant::now() + Duration::from_millis(50) >= deadline =>
                {
                    return Err(timed_out());
                }
                Ok(Err(status))
                    if connection_lost(&status)
                        || matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled) =>
                {
                    tracing::debug!(
                        instance_id,
                        "the sidecar is unavailable ({status}); waiting again"
                    );
                    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                    tokio::time::sleep(backoff.min(remaining)).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Ok(result) => break result?.into_inner(),
            }
        };
        existing_state(response)
            .ok_or_else(|| ClientError::NotFound(format!("instance `{instance_id}`")))
    }

    /// Raises an external event on an instance; `data` is serialized to JSON.
    pub async fn raise_orchestration_event<T: Serialize + ?Sized>(
        &self,
        instance_id: &str,
        event_name: &str,
        data: &T,
    ) -> Result<(), ClientError> {
        let request = proto::RaiseEventRequest {
            instance_id: instance_id.to_owned(),
            name: event_name.to_owned(),
            input: Some(encode("event data", data)?),
        };
        let span = crate::telemetry::raise_event(event_name, instance_id);
        let result = self.inner.clone().raise_event(request).await;
        crate::telemetry::end(&span, result.as_ref().err().map(|s| s.message()));
        result?;
        Ok(())
    }

    /// Terminates a running, pending or suspended instance; with `recursive`, its
    /// sub-orchestrations too. A finished instance is refused (`FAILED_PRECONDITION` from
    /// this crate's sidecar). To record a result, use
    /// [`terminate_orchestration_with_output`](Self::terminate_orchestration_with_output).
    ///
    /// ```no_run
    /// # async fn demo(client: durable::DurableClient) -> Result<(), durable::ClientError> {
    /// client.terminate_orchestration("order-9", false).await?;
    /// # Ok(()) }
    /// ```
    pub async fn terminate_orchestration(
        &self,
        instance_id: &str,
        recursive: bool,
    ) -> Result<(), ClientError> {
        self.terminate(instance_id, None, recursive).await
    }

    /// Terminates an instance like
    /// [`terminate_orchestration`](Self::terminate_orchestration), recording `output` as its
    /// result.
    ///
    /// ```no_run
    /// # async fn demo(client: durable::DurableClient) -> Result<(), durable::ClientError> {
    /// client
    ///     .terminate_orchestration_with_output("order-9", "cancelled by the customer", false)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn terminate_orchestration_with_output<T: Serialize + ?Sized>(
        &self,
        instance_id: &str,
        output: &T,
        recursive: bool,
    ) -> Result<(), ClientError> {
        let output = encode("termination output", output)?;
        self.terminate(instance_id, Some(output), recursive).await
    }

    async fn terminate(
        &self,
        instance_id: &str,
        output: Option<String>,
        recursive: bool,
    ) -> Result<(), ClientError> {
        let request = proto::TerminateRequest {
            instance_id: instance_id.to_owned(),
            output,
            recursive,
        };
        self.inner.clone().terminate_instance(request).await?;
        Ok(())
    }

    /// Suspends an instance: it keeps receiving events but does not run until resumed.
    pub async fn suspend_orchestration(
        &self,
        instance_id: &str,
        reason: Option<&str>,
    ) -> Result<(), ClientError> {
        let request = proto::SuspendRequest {
            instance_id: instance_id.to_owned(),
            reason: reason.map(str::to_owned),
        };
        self.inner.clone().suspend_instance(request).await?;
        Ok(())
    }

    /// Resumes a suspended instance.
    pub async fn resume_orchestration(
        &self,
        instance_id: &str,
        reason: Option<&str>,
    ) -> Result<(), ClientError> {
        let request = proto::ResumeRequest {
            instance_id: instance_id.to_owned(),
            reason: reason.map(str::to_owned),
        };
        self.inner.clone().resume_instance(request).await?;
        Ok(())
    }

    /// Deletes a finished instance and its history; with `recursive`, its sub-orchestrations
    /// too. Deleting an instance that does not exist deletes nothing (count 0).
    pub async fn purge_orchestration(
        &self,
        instance_id: &str,
        recursive: bool,
    ) -> Result<PurgeResult, ClientError> {
        self.purge(
            proto::purge_instances_request::Request::InstanceId(instance_id.to_owned()),
            recursive,
        )
        .await
    }

    /// Deletes every finished instance matching `filter`.
    pub async fn purge_orchestrations(
        &self,
        filter: &PurgeFilter,
        recursive: bool,
    ) -> Result<PurgeResult, ClientError> {
        let filter = proto::PurgeInstanceFilter {
            created_time_from: filter.created_from.map(to_timestamp),
            created_time_to: filter.created_to.map(to_timestamp),
            runtime_status: filter.statuses.iter().map(|s| s.to_wire()).collect(),
            timeout: None,
        };
        self.purge(
            proto::purge_instances_request::Request::PurgeInstanceFilter(filter),
            recursive,
        )
        .await
    }

    async fn purge(
        &self,
        request: proto::purge_instances_request::Request,
        recursive: bool,
    ) -> Result<PurgeResult, ClientError> {
        let request = proto::PurgeInstancesRequest {
            recursive,
            is_orchestration: true,
            request: Some(request),
        };
        let response = self
            .inner
            .clone()
            .purge_instances(request)
            .await?
            .into_inner();
        Ok(PurgeResult {
            deleted_instance_count: u32::try_from(response.deleted_instance_count).unwrap_or(0),
            is_complete: response.is_complete,
        })
    }

    /// One page of instances matching `query`.
    pub async fn query_orchestrations(
        &self,
        query: &OrchestrationQuery,
    ) -> Result<QueryPage, ClientError> {
        let request = proto::QueryInstancesRequest {
            query: Some(proto::InstanceQuery {
                runtime_status: query.statuses.iter().map(|s| s.to_wire()).collect(),
                created_time_from: query.created_from.map(to_timestamp),
                created_time_to: query.created_to.map(to_timestamp),
                task_hub_names: Vec::new(),
                max_instance_count: query
                    .page_size
                    .map_or(0, |n| i32::try_from(n).unwrap_or(i32::MAX)),
                continuation_token: query.continuation_token.clone(),
                instance_id_prefix: query.instance_id_prefix.clone(),
                fetch_inputs_and_outputs: query.fetch_inputs_and_outputs,
            }),
        };
        let response = self
            .inner
            .clone()
            .query_instances(request)
            .await?
            .into_inner();
        Ok(Page {
            items: response
                .orchestration_state
                .into_iter()
                .map(OrchestrationState::from_wire)
                .collect(),
            continuation_token: next_token(response.continuation_token),
        })
    }

    /// Every instance matching `query`, following continuation tokens to the last page.
    pub async fn query_all_orchestrations(
        &self,
        query: &OrchestrationQuery,
    ) -> Result<Vec<OrchestrationState>, ClientError> {
        let mut query = query.clone();
        let mut all = Vec::new();
        loop {
            let page = self.query_orchestrations(&query).await?;
            all.extend(page.items);
            match page.continuation_token {
                Some(token) if query.continuation_token.as_deref() != Some(token.as_str()) => {
                    query.continuation_token = Some(token);
                }
                _ => return Ok(all),
            }
        }
    }

    /// One page of ids of finished instances matching `filter`.
    pub async fn list_instance_ids(
        &self,
        filter: &InstanceIdFilter,
    ) -> Result<Page<String>, ClientError> {
        let request = proto::ListInstanceIdsRequest {
            runtime_status: filter.statuses.iter().map(|s| s.to_wire()).collect(),
            completed_time_from: filter.completed_from.map(to_timestamp),
            completed_time_to: filter.completed_to.map(to_timestamp),
            page_size: filter
                .page_size
                .map_or(0, |n| i32::try_from(n).unwrap_or(i32::MAX)),
            last_instance_key: filter.continuation_token.clone(),
        };
        let response = self
            .inner
            .clone()
            .list_instance_ids(request)
            .await?
            .into_inner();
        Ok(Page {
            items: response.instance_ids,
            continuation_token: next_token(response.last_instance_key),
        })
    }

    /// Restarts a finished instance with its original input; returns the id it runs under
    /// (a new one with `new_instance_id`).
    pub async fn restart_orchestration(
        &self,
        instance_id: &str,
        new_instance_id: bool,
    ) -> Result<String, ClientError> {
        let request = proto::RestartInstanceRequest {
            instance_id: instance_id.to_owned(),
            restart_with_new_instance_id: new_instance_id,
        };
        let response = self.inner.clone().restart_instance(request).await?;
        Ok(response.into_inner().instance_id)
    }

    /// Rewinds a failed instance: its failed tasks run again as if they had not failed.
    pub async fn rewind_orchestration(
        &self,
        instance_id: &str,
        reason: Option<&str>,
    ) -> Result<(), ClientError> {
        let request = proto::RewindInstanceRequest {
            instance_id: instance_id.to_owned(),
            reason: reason.map(str::to_owned),
        };
        self.inner.clone().rewind_instance(request).await?;
        Ok(())
    }

    /// The full history of an instance's current execution (`StreamInstanceHistory`).
    pub async fn get_history(
        &self,
        instance_id: &str,
    ) -> Result<Vec<proto::HistoryEvent>, ClientError> {
        let request = proto::StreamInstanceHistoryRequest {
            instance_id: instance_id.to_owned(),
            execution_id: None,
            for_work_item_processing: false,
        };
        Ok(stream_history(&self.inner, request).await?)
    }
}

/// Reads a whole `StreamInstanceHistory` stream into one list of events.
pub(crate) async fn stream_history(
    client: &SidecarClient,
    request: proto::StreamInstanceHistoryRequest,
) -> Result<Vec<proto::HistoryEvent>, tonic::Status> {
    let mut stream = client
        .clone()
        .stream_instance_history(request)
        .await?
        .into_inner();
    let mut events = Vec::new();
    while let Some(chunk) = stream.next().await.transpose()? {
        events.extend(chunk.events);
    }
    Ok(events)
}

fn existing_state(response: proto::GetInstanceResponse) -> Option<OrchestrationState> {
    if !response.exists {
        return None;
    }
    response
        .orchestration_state
        .map(OrchestrationState::from_wire)
}

/// Servers mark the last page with an absent, empty or (Python) `"0"` token.
fn next_token(token: Option<String>) -> Option<String> {
    token.filter(|t| !t.is_empty() && t != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_schemes_choose_tls() {
        let uri = |e: &str| ConnectOptions::new(e).uri();
        assert_eq!(
            uri("localhost:4001"),
            ("http://localhost:4001".into(), false)
        );
        assert_eq!(uri("grpc://h:1"), ("http://h:1".into(), false));
        assert_eq!(uri("grpcs://h:443"), ("https://h:443".into(), true));
        assert_eq!(uri("https://h"), ("https://h".into(), true));
    }

    #[test]
    fn the_output_of_a_failed_instance_names_the_failure() {
        let state = OrchestrationState::from_wire(proto::OrchestrationState {
            instance_id: "order-1".into(),
            orchestration_status: proto::OrchestrationStatus::Failed as i32,
            failure_details: Some(proto::TaskFailureDetails {
                error_type: "Declined".into(),
                error_message: "no funds".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let err = state
            .output::<u32>()
            .expect_err("a failed instance has no output");
        assert!(
            matches!(&err, ClientError::FailedPrecondition(m) if m.contains("'order-1' failed (Declined: no funds)")),
            "{err}"
        );
    }

    #[test]
    fn bad_headers_are_rejected_by_name() {
        let err = ConnectOptions::new("http://h:1")
            .header("bad header", "x")
            .interceptor()
            .err()
            .expect("a space is not valid in a header name");
        assert!(err.to_string().contains("bad header"), "{err}");
    }

    #[test]
    fn status_codes_map_to_typed_errors() {
        assert!(matches!(
            ClientError::from(Status::not_found("x")),
            ClientError::NotFound(_)
        ));
        assert!(matches!(
            ClientError::from(Status::already_exists("x")),
            ClientError::AlreadyExists(_)
        ));
        assert!(ClientError::from(Status::unavailable("x")).is_retryable());
    }

    #[test]
    fn last_page_tokens() {
        assert_eq!(next_token(Some("0".into())), None);
        assert_eq!(next_token(Some(String::new())), None);
        assert_eq!(next_token(Some("abc".into())), Some("abc".into()));
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            RuntimeStatus::Pending,
            RuntimeStatus::Running,
            RuntimeStatus::Completed,
            RuntimeStatus::ContinuedAsNew,
            RuntimeStatus::Failed,
            RuntimeStatus::Canceled,
            RuntimeStatus::Terminated,
            RuntimeStatus::Suspended,
        ] {
            assert_eq!(RuntimeStatus::from_wire(s.to_wire()), s);
        }
    }
}
