//! The worker: receives orchestration, activity and entity work items from a sidecar and runs
//! them.
//!
//! A [`Worker`] calls `Hello`, opens the `GetWorkItems` stream and runs each work item
//! concurrently (orchestration episodes on blocking threads through the replay executor,
//! activities and entity batches on tokio), within the limits of [`WorkerOptions`]. Results go
//! back with `CompleteOrchestratorTask` / `CompleteActivityTask` / `CompleteEntityTask`,
//! echoing the work item's completion token. Errors and panics of user code become failure details, never a dead worker.
//!
//! When the sidecar goes away (stream error, end of stream, or no message for
//! [`WorkerOptions::silent_timeout`]), the worker reconnects with jittered exponential backoff.
//! [`WorkerHandle::shutdown`] stops taking work, lets running work finish within
//! [`WorkerOptions::shutdown_grace`], and abandons the rest so the sidecar can hand it out
//! again.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use durable::client::ConnectOptions;
//! use durable::worker::{Worker, WorkerOptions};
//!
//! let registry = durable::Registry::from_inventory()?;
//! let worker = Worker::new(registry, ConnectOptions::new("http://127.0.0.1:4001"))
//!     .with_options(WorkerOptions::new().max_concurrent_activities(32))
//!     .start();
//! // ... later
//! worker.shutdown().await;
//! # Ok(()) }
//! ```

mod backoff;
mod cancellation;
mod episodes;
mod execute;
mod versioning;

pub use self::versioning::{VERSION_MISMATCH_ERROR_TYPE, VersionFailure, VersionMatch, Versioning};

use futures::StreamExt as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{ClientError, ConnectOptions, SidecarClient};
use crate::error::FailureDetails;
use crate::proto;
use crate::proto::work_item::Request as WorkRequest;
use crate::registry::Registry;

use self::backoff::Backoff;

/// The failure type recorded when a work item names an activity this worker does not have.
pub const ACTIVITY_NOT_FOUND_ERROR_TYPE: &str = execute::ACTIVITY_NOT_FOUND;
/// The failure type recorded when an activity (or the SDK itself) panics.
pub const PANIC_ERROR_TYPE: &str = execute::PANIC_ERROR_TYPE;

/// Tuning of a [`Worker`]. The defaults suit most programs.
///
/// ```
/// use std::time::Duration;
/// let options = durable::worker::WorkerOptions::new()
///     .max_concurrent_orchestrations(50)
///     .max_concurrent_activities(200)
///     .shutdown_grace(Duration::from_secs(10));
/// assert_eq!(options.max_concurrent_activities_value(), 200);
/// ```
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    max_orchestrations: usize,
    max_activities: usize,
    max_entities: usize,
    shutdown_grace: Duration,
    silent_timeout: Duration,
    hello_timeout: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    work_item_filters: bool,
    cancellation_poll: Duration,
    versioning: Option<Versioning>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            max_orchestrations: 100 * cpus,
            max_activities: 100 * cpus,
            max_entities: 100 * cpus,
            shutdown_grace: Duration::from_secs(30),
            silent_timeout: Duration::from_secs(150),
            hello_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(15),
            work_item_filters: false,
            cancellation_poll: Duration::from_secs(5),
            versioning: None,
        }
    }
}

impl WorkerOptions {
    /// The defaults: 100 × CPUs concurrent orchestrations, activities and entity batches (as
    /// the Python SDK),
    /// 30 s shutdown grace, 150 s silence watchdog, reconnect backoff 100 ms .. 15 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `n` orchestration episodes at once (at least 1). Also sent to the sidecar as a
    /// hint.
    pub fn max_concurrent_orchestrations(mut self, n: usize) -> Self {
        self.max_orchestrations = n.max(1);
        self
    }

    /// At most `n` activities at once (at least 1). Also sent to the sidecar as a hint.
    pub fn max_concurrent_activities(mut self, n: usize) -> Self {
        self.max_activities = n.max(1);
        self
    }

    /// At most `n` entity batches at once (at least 1; each entity runs one batch at a time
    /// anyway). Also sent to the sidecar as a hint.
    pub fn max_concurrent_entities(mut self, n: usize) -> Self {
        self.max_entities = n.max(1);
        self
    }

    /// How long [`WorkerHandle::shutdown`] waits for running work before abandoning it.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Reconnect when the work-item stream carries no message (not even a health ping) for
    /// this long. Sidecars that never send health pings cause a harmless reconnect per period
    /// of idleness.
    pub fn silent_timeout(mut self, timeout: Duration) -> Self {
        self.silent_timeout = timeout;
        self
    }

    /// The deadline of each `Hello` call.
    pub fn hello_timeout(mut self, timeout: Duration) -> Self {
        self.hello_timeout = timeout;
        self
    }

    /// The range of reconnect delays (doubling from `min` to `max`, jittered).
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }

    /// Asks the sidecar for only the orchestrators, activities and entities this worker has
    /// registered (`workItemFilters`). Useful when workers of several SDKs share one
    /// sidecar. Off by default: not every sidecar honours filters.
    pub fn work_item_filters(mut self, enabled: bool) -> Self {
        self.work_item_filters = enabled;
        self
    }

    /// How often a running activity's orchestration is checked (`GetInstance`) to tell the
    /// activity, through [`ActivityContext::cancelled`](crate::ActivityContext::cancelled),
    /// that it is no longer wanted (terminated, finished, purged, continued as new). Default
    /// 5 s; activities shorter than this never cause a check.
    pub fn activity_cancellation_poll(mut self, interval: Duration) -> Self {
        self.cancellation_poll = interval.max(Duration::from_millis(10));
        self
    }

    /// Gives the worker a version and says which orchestration versions it runs (by default
    /// a worker runs every version). With [`work_item_filters`](Self::work_item_filters) and
    /// [`VersionMatch::Strict`], the sidecar is asked for that version only.
    pub fn versioning(mut self, versioning: Versioning) -> Self {
        self.versioning = Some(versioning);
        self
    }

    /// The configured orchestration limit.
    pub fn max_concurrent_orchestrations_value(&self) -> usize {
        self.max_orchestrations
    }

    /// The configured activity limit.
    pub fn max_concurrent_activities_value(&self) -> usize {
        self.max_activities
    }

    /// The configured entity batch limit.
    pub fn max_concurrent_entities_value(&self) -> usize {
        self.max_entities
    }
}

/// A worker serving the orchestrators and activities of a [`Registry`].
#[derive(Debug)]
pub struct Worker {
    registry: Registry,
    connection: ConnectOptions,
    options: WorkerOptions,
}

impl Worker {
    /// A worker for the sidecar described by `connection`, with default options.
    pub fn new(registry: Registry, connection: ConnectOptions) -> Self {
        Self {
            registry,
            connection,
            options: WorkerOptions::default(),
        }
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: WorkerOptions) -> Self {
        self.options = options;
        self
    }

    /// Starts the worker on the current tokio runtime and returns at once; the worker keeps
    /// (re)connecting in the background until [`WorkerHandle::shutdown`] (or until the handle
    /// is dropped, which stops it without waiting).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start(self) -> WorkerHandle {
        execute::install_panic_hook();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (status_tx, status_rx) = watch::channel(WorkerStatus::default());
        let (phase_tx, phase_rx) = watch::channel(Phase::Running);
        let inner = Arc::new(Inner {
            orchestration_slots: Arc::new(Semaphore::new(self.options.max_orchestrations)),
            activity_slots: Arc::new(Semaphore::new(self.options.max_activities)),
            entity_slots: Arc::new(Semaphore::new(self.options.max_entities)),
            registry: Arc::new(self.registry),
            connection: self.connection,
            options: self.options,
            phase: phase_rx,
        });
        let task = tokio::spawn(run(inner, stop_rx, status_tx, phase_tx));
        WorkerHandle {
            stop: stop_tx,
            status: status_rx,
            task,
        }
    }
}

/// What a running worker reports about its connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStatus {
    /// `true` while a work-item stream is open.
    pub connected: bool,
    /// How many work-item streams were opened so far (reconnects count).
    pub connections: u64,
}

/// Controls a started [`Worker`].
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    status: watch::Receiver<WorkerStatus>,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    /// The current connection status.
    pub fn status(&self) -> WorkerStatus {
        *self.status.borrow()
    }

    /// Waits until at least `connections` work-item streams have been opened (1 = the first
    /// connection; 2 = the first reconnect) and one is open, at most `timeout`. Returns
    /// whether that happened.
    pub async fn wait_connected(&self, connections: u64, timeout: Duration) -> bool {
        let mut status = self.status.clone();
        tokio::time::timeout(
            timeout,
            status.wait_for(|s| s.connected && s.connections >= connections),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// Stops taking work, waits for running work up to the shutdown grace period, abandons
    /// what did not finish, and returns when the worker has stopped.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!("the worker task ended abnormally: {e}");
        }
    }
}

/// Where a worker is in its life; work items watch it to know when to give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Running,
    /// Shutting down: work not started yet is abandoned.
    Draining,
    /// The grace period is over: running work is abandoned too.
    Abandoning,
}

struct Inner {
    registry: Arc<Registry>,
    connection: ConnectOptions,
    options: WorkerOptions,
    orchestration_slots: Arc<Semaphore>,
    activity_slots: Arc<Semaphore>,
    entity_slots: Arc<Semaphore>,
    phase: watch::Receiver<Phase>,
}

/// Why a connection ended.
enum Ended {
    Shutdown,
    Disconnected(String),
}

async fn run(
    inner: Arc<Inner>,
    mut stop: watch::Receiver<bool>,
    status: watch::Sender<WorkerStatus>,
    phase: watch::Sender<Phase>,
) {
    let mut tasks = JoinSet::new();
    let mut backoff = Backoff::new(inner.options.backoff_min, inner.options.backoff_max);
    loop {
        if stop_requested(&stop) {
            break;
        }
        let ended = serve(&inner, &mut stop, &mut tasks, &status, &mut backoff).await;
        status.send_modify(|s| s.connected = false);
        match ended {
            Ended::Shutdown => break,
            Ended::Disconnected(reason) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    endpoint = inner.connection.endpoint(),
                    "sidecar connection lost ({reason}); reconnecting in {delay:?}"
                );
                let sleep = tokio::time::sleep(delay);
                tokio::pin!(sleep);
                let mut stopping = false;
                loop {
                    tokio::select! {
                        _ = &mut sleep => break,
                        _ = stop.changed() => { stopping = true; break; }
                        Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    }
                }
                if stopping {
                    break;
                }
            }
        }
    }
    drain(&inner, tasks, &phase).await;
}

fn stop_requested(stop: &watch::Receiver<bool>) -> bool {
    // A dropped handle counts as a stop request.
    *stop.borrow() || stop.has_changed().is_err()
}

async fn drain(inner: &Inner, mut tasks: JoinSet<()>, phase: &watch::Sender<Phase>) {
    let _ = phase.send(Phase::Draining);
    if !tasks.is_empty() {
        tracing::info!(
            "worker shutting down: waiting up to {:?} for {} work item(s)",
            inner.options.shutdown_grace,
            tasks.len()
        );
    }
    let finished = tokio::time::timeout(inner.options.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            "worker shutdown grace period over: abandoning {} work item(s)",
            tasks.len()
        );
        let _ = phase.send(Phase::Abandoning);
        // Abandon calls are quick; don't hang forever on a dead sidecar.
        if tokio::time::timeout(Duration::from_secs(10), async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tasks.abort_all();
        }
    }
    tracing::info!("worker stopped");
}

async fn serve(
    inner: &Arc<Inner>,
    stop: &mut watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
    status: &watch::Sender<WorkerStatus>,
    backoff: &mut Backoff,
) -> Ended {
    let connected = tokio::select! {
        connected = connect(inner) => connected,
        _ = stop.changed() => return Ended::Shutdown,
    };
    let (client, request) = match connected {
        Ok(connected) => connected,
        Err(e) => return Ended::Disconnected(e.to_string()),
    };
    backoff.reset();
    status.send_modify(|s| {
        s.connected = true;
        s.connections += 1;
    });
    tracing::info!(
        endpoint = inner.connection.endpoint(),
        "connected to the sidecar; waiting for work items"
    );
    let silent = inner.options.silent_timeout;
    let watchdog = tokio::time::sleep(silent);
    tokio::pin!(watchdog);
    // Some servers (grpcio) send the response headers only with the first work item, so the
    // call itself may stay pending for as long as there is no work.
    let mut call_client = client.clone();
    let open = call_client.get_work_items(request);
    tokio::pin!(open);
    let stream_id = episodes::new_stream_id();
    let mut stream = loop {
        tokio::select! {
            _ = stop.changed() => return Ended::Shutdown,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = &mut watchdog => {
                return Ended::Disconnected(format!("no message from the sidecar for {silent:?}"));
            }
            opened = &mut open => match opened {
                Ok(response) => break response.into_inner(),
                Err(status) => return Ended::Disconnected(format!("GetWorkItems failed: {status}")),
            }
        }
    };
    loop {
        tokio::select! {
            _ = stop.changed() => return Ended::Shutdown,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = &mut watchdog => {
                return Ended::Disconnected(format!("no message from the sidecar for {silent:?}"));
            }
            // `StreamExt::next` is cancel-safe.
            message = stream.next() => match message.transpose() {
                Ok(Some(item)) => {
                    watchdog.as_mut().reset(Instant::now() + silent);
                    dispatch(inner, &client, stream_id, item, tasks);
                }
                Ok(None) => return Ended::Disconnected("the sidecar closed the work-item stream".into()),
                Err(status) => return Ended::Disconnected(format!("work-item stream error: {status}")),
            }
        }
    }
}

/// Connects and says `Hello`; returns the client and the `GetWorkItems` request to send.
async fn connect(
    inner: &Inner,
) -> Result<(SidecarClient, proto::GetWorkItemsRequest), ClientError> {
    let mut client = inner.connection.connect_client().await?;
    let mut hello = tonic::Request::new(());
    hello.set_timeout(inner.options.hello_timeout);
    client.hello(hello).await?;
    let work_item_filters = inner.options.work_item_filters.then(|| {
        let registry = &inner.registry;
        proto::WorkItemFilters {
            orchestrations: registry
                .orchestrator_names()
                .map(|name| proto::OrchestrationFilter {
                    name: name.to_owned(),
                    versions: inner
                        .options
                        .versioning
                        .as_ref()
                        .map(Versioning::filter_versions)
                        .unwrap_or_default(),
                })
                .collect(),
            activities: registry
                .activity_names()
                .map(|name| proto::ActivityFilter {
                    name: name.to_owned(),
                    versions: Vec::new(),
                })
                .collect(),
            entities: registry
                .entity_names()
                .map(|name| proto::EntityFilter {
                    name: name.to_owned(),
                })
                .collect(),
        }
    });
    let request = proto::GetWorkItemsRequest {
        max_concurrent_orchestration_work_items: clamp(inner.options.max_orchestrations),
        max_concurrent_activity_work_items: clamp(inner.options.max_activities),
        max_concurrent_entity_work_items: clamp(inner.options.max_entities),
        capabilities: Vec::new(),
        work_item_filters,
    };
    Ok((client, request))
}

fn clamp(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn dispatch(
    inner: &Arc<Inner>,
    client: &SidecarClient,
    stream: u64,
    item: proto::WorkItem,
    tasks: &mut JoinSet<()>,
) {
    let token = item.completion_token;
    match item.request {
        Some(WorkRequest::OrchestratorRequest(request)) => {
            tasks.spawn(orchestration_item(
                Arc::clone(inner),
                client.clone(),
                stream,
                request,
                token,
            ));
        }
        Some(WorkRequest::ActivityRequest(request)) => {
            tasks.spawn(activity_item(
                Arc::clone(inner),
                client.clone(),
                request,
                token,
            ));
        }
        Some(WorkRequest::HealthPing(_)) => {}
        Some(WorkRequest::EntityRequest(request)) => {
            tasks.spawn(entity_item(
                Arc::clone(inner),
                client.clone(),
                request,
                Vec::new(),
                token,
            ));
        }
        Some(WorkRequest::EntityRequestV2(request)) => {
            let (batch, infos) = crate::entity::executor::from_v2(request);
            tasks.spawn(entity_item(
                Arc::clone(inner),
                client.clone(),
                batch,
                infos,
                token,
            ));
        }
        None => tracing::debug!("ignoring an empty work item"),
    }
}

/// Resolves once the worker reaches `phase` (or is gone).
async fn reached(mut rx: watch::Receiver<Phase>, phase: Phase) {
    let _ = rx.wait_for(|p| *p >= phase).await;
}

async fn activity_item(
    inner: Arc<Inner>,
    client: SidecarClient,
    request: proto::ActivityRequest,
    token: String,
) {
    let abandon = |mut client: SidecarClient, token: String| async move {
        let request = proto::AbandonActivityTaskRequest {
            completion_token: token,
        };
        if let Err(e) = client.abandon_task_activity_work_item(request).await {
            tracing::warn!("abandoning an activity work item failed: {e}");
        }
    };
    let permit = tokio::select! {
        permit = Arc::clone(&inner.activity_slots).acquire_owned() => permit,
        _ = reached(inner.phase.clone(), Phase::Draining) => {
            return abandon(client, token).await;
        }
    };
    let Ok(_permit) = permit else {
        return abandon(client, token).await;
    };
    let name = request.name.clone();
    let cancel = CancellationToken::new();
    let watch = cancellation::watch_orchestration(
        client.clone(),
        request.orchestration_instance.clone().unwrap_or_default(),
        name.clone(),
        inner.options.cancellation_poll,
        cancel.clone(),
    );
    let run = execute::run_activity(&inner.registry, request, cancel.clone());
    let draining = reached(inner.phase.clone(), Phase::Draining);
    let abandoning = reached(inner.phase.clone(), Phase::Abandoning);
    tokio::pin!(watch, run, draining, abandoning);
    let (mut watching, mut shutting_down) = (true, false);
    let mut response = loop {
        tokio::select! {
            response = &mut run => break response,
            () = &mut watch, if watching => watching = false,
            () = &mut draining, if !shutting_down => {
                shutting_down = true;
                cancel.cancel();
            }
            () = &mut abandoning => {
                tracing::warn!("abandoning activity `{name}`: still running at the end of the shutdown grace period");
                return abandon(client, token).await;
            }
        }
    };
    if shutting_down && response.failure_details.is_some() {
        // Most likely the activity stopped because it was told to: let another worker run it.
        tracing::info!("abandoning activity `{name}`: it failed after the shutdown cancelled it");
        return abandon(client, token).await;
    }
    response.completion_token = token.clone();
    let instance_id = response.instance_id.clone();
    let task_id = response.task_id;
    let replacement = |status: &tonic::Status| {
        // The result itself is the problem: report that instead, so the task fails clearly.
        let failure = FailureDetails::new(
            PAYLOAD_TOO_LARGE_ERROR_TYPE,
            format!(
                "the result of activity `{name}` was refused by the sidecar: {}",
                status.message()
            ),
        )
        .non_retriable();
        proto::ActivityResponse {
            instance_id,
            task_id,
            result: None,
            failure_details: Some((&failure).into()),
            completion_token: token.clone(),
        }
    };
    let send = |response: proto::ActivityResponse| {
        let mut client = client.clone();
        async move { client.complete_activity_task(response).await }
    };
    if !complete_or_replace("activity", response, replacement, send).await {
        abandon(client, token).await;
    }
}

async fn entity_item(
    inner: Arc<Inner>,
    client: SidecarClient,
    request: proto::EntityBatchRequest,
    infos: Vec<proto::OperationInfo>,
    token: String,
) {
    let abandon = |mut client: SidecarClient, token: String| async move {
        let request = proto::AbandonEntityTaskRequest {
            completion_token: token,
        };
        if let Err(e) = client.abandon_task_entity_work_item(request).await {
            tracing::warn!("abandoning an entity work item failed: {e}");
        }
    };
    let permit = tokio::select! {
        permit = Arc::clone(&inner.entity_slots).acquire_owned() => permit,
        _ = reached(inner.phase.clone(), Phase::Draining) => {
            return abandon(client, token).await;
        }
    };
    let Ok(_permit) = permit else {
        return abandon(client, token).await;
    };
    let entity = request.instance_id.clone();
    let old_state = request.entity_state.clone();
    let mut result = tokio::select! {
        result = crate::entity::executor::run_batch(&inner.registry, request) => result,
        _ = reached(inner.phase.clone(), Phase::Abandoning) => {
            tracing::warn!("abandoning a batch of entity `{entity}`: still running at the end of the shutdown grace period");
            return abandon(client, token).await;
        }
    };
    result.completion_token = token.clone();
    result.operation_infos = infos.clone();
    let operations = result.results.len();
    let replacement = |status: &tonic::Status| {
        // Running the batch again would produce the same oversized result: every operation
        // fails saying why, and the state stays as it was.
        let failure = FailureDetails::new(
            PAYLOAD_TOO_LARGE_ERROR_TYPE,
            format!(
                "the result of a batch of entity `{entity}` was refused by the sidecar: {}; keep \
                 operation results and entity state small",
                status.message()
            ),
        )
        .non_retriable();
        let failed = proto::OperationResult {
            result_type: Some(proto::operation_result::ResultType::Failure(
                proto::OperationResultFailure {
                    failure_details: Some((&failure).into()),
                    start_time_utc: None,
                    end_time_utc: None,
                },
            )),
        };
        proto::EntityBatchResult {
            results: vec![failed; operations],
            entity_state: old_state.clone(),
            completion_token: token.clone(),
            operation_infos: infos.clone(),
            ..Default::default()
        }
    };
    let send = |result: proto::EntityBatchResult| {
        let mut client = client.clone();
        async move { client.complete_entity_task(result).await }
    };
    if !complete_or_replace("entity", result, replacement, send).await {
        abandon(client, token).await;
    }
}

async fn orchestration_item(
    inner: Arc<Inner>,
    client: SidecarClient,
    stream: u64,
    mut request: proto::OrchestratorRequest,
    token: String,
) {
    let abandon = |mut client: SidecarClient, token: String| async move {
        let request = proto::AbandonOrchestrationTaskRequest {
            completion_token: token,
        };
        if let Err(e) = client.abandon_task_orchestrator_work_item(request).await {
            tracing::warn!("abandoning an orchestration work item failed: {e}");
        }
    };
    let permit = tokio::select! {
        permit = Arc::clone(&inner.orchestration_slots).acquire_owned() => permit,
        _ = reached(inner.phase.clone(), Phase::Draining) => {
            return abandon(client, token).await;
        }
    };
    let Ok(_permit) = permit else {
        return abandon(client, token).await;
    };
    if request.requires_history_streaming && request.past_events.is_empty() {
        match fetch_history(&client, &request).await {
            Ok(events) => request.past_events = events,
            Err(e) => {
                tracing::warn!(
                    instance_id = %request.instance_id,
                    "could not stream the history of a work item ({e}); abandoning it"
                );
                return abandon(client, token).await;
            }
        }
    }
    // An episode that continues state this worker holds needs no check: that state exists
    // because an earlier episode of the execution passed it here, under the same options.
    let continues = request.held_events().is_some();
    let mismatch = inner
        .options
        .versioning
        .as_ref()
        .filter(|_| !continues)
        .and_then(|versioning| {
            let problem = versioning.mismatch(&versioning::instance_version(&request))?;
            Some((versioning.failure_strategy_value(), problem))
        });
    match mismatch {
        Some((VersionFailure::Reject, problem)) => {
            tracing::info!(instance_id = %request.instance_id, "handing the work item back: {problem}");
            drop(_permit);
            // Not at once: the sidecar may well hand it straight back to this worker.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = reached(inner.phase.clone(), Phase::Abandoning) => {}
            }
            return abandon(client, token).await;
        }
        Some((VersionFailure::Fail, problem)) => {
            tracing::warn!(instance_id = %request.instance_id, "failing the orchestration: {problem}");
            let failure = FailureDetails::new(VERSION_MISMATCH_ERROR_TYPE, problem).non_retriable();
            let response = failed_response(request.instance_id, &token, &failure);
            let send = |response: proto::OrchestratorResponse| {
                let mut client = client.clone();
                async move { client.complete_orchestrator_task(response).await }
            };
            if retry_completion("orchestration", || send(response.clone()))
                .await
                .is_err()
            {
                abandon(client, token).await;
            }
            return;
        }
        None => {}
    }
    let first_episode = Lifecycle::is_first_episode(&request);
    let (mut response, name) = tokio::select! {
        ran = execute::run_orchestration(
            Arc::clone(&inner.registry),
            request,
            inner.connection.is_in_process().then_some(stream),
        ) => ran,
        _ = reached(inner.phase.clone(), Phase::Abandoning) => {
            return abandon(client, token).await;
        }
    };
    response.completion_token = token.clone();
    let lifecycle = Lifecycle {
        instance_id: response.instance_id.clone(),
        name,
        first_episode,
    };
    lifecycle.log(&response);
    let instance_id = response.instance_id.clone();
    let replacement = |status: &tonic::Status| {
        // Replaying would produce the same oversized response forever: fail the orchestration
        // with a message that says what to change.
        let failure = FailureDetails::new(
            PAYLOAD_TOO_LARGE_ERROR_TYPE,
            format!(
                "the orchestration's response was refused by the sidecar: {}; keep inputs, \
                 outputs and custom status small (store large data elsewhere) and bound \
                 history with continue-as-new",
                status.message()
            ),
        )
        .non_retriable();
        failed_response(instance_id.clone(), &token, &failure)
    };
    let send = |response: proto::OrchestratorResponse| {
        let mut client = client.clone();
        async move { client.complete_orchestrator_task(response).await }
    };
    if !complete_or_replace("orchestration", response, replacement, send).await {
        abandon(client, token).await;
    }
}

/// What an episode means for its orchestration's life, for the one info line each start and
/// end gets (episodes replay, these lines do not repeat).
struct Lifecycle {
    instance_id: String,
    name: String,
    first_episode: bool,
}

impl Lifecycle {
    /// Whether `request` starts its execution (its `ExecutionStarted` event is new).
    fn is_first_episode(request: &proto::OrchestratorRequest) -> bool {
        request.new_events.iter().any(|e| {
            matches!(
                e.event_type,
                Some(proto::history_event::EventType::ExecutionStarted(_))
            )
        })
    }

    fn log(&self, response: &proto::OrchestratorResponse) {
        use proto::orchestrator_action::OrchestratorActionType as Action;
        let (id, name) = (&self.instance_id, &self.name);
        if self.first_episode {
            tracing::info!(instance_id = %id, "orchestration `{name}` started");
        }
        let completion = response
            .actions
            .iter()
            .find_map(|a| match &a.orchestrator_action_type {
                Some(Action::CompleteOrchestration(c)) => Some(c),
                _ => None,
            });
        let Some(completion) = completion else {
            return;
        };
        match completion.orchestration_status() {
            proto::OrchestrationStatus::Completed => {
                tracing::info!(instance_id = %id, "orchestration `{name}` completed");
            }
            proto::OrchestrationStatus::ContinuedAsNew => {
                tracing::info!(instance_id = %id, "orchestration `{name}` continued as new");
            }
            proto::OrchestrationStatus::Failed => {
                let failure = completion
                    .failure_details
                    .as_ref()
                    .map(|f| format!("{}: {}", f.error_type, f.error_message))
                    .unwrap_or_default();
                tracing::info!(instance_id = %id, "orchestration `{name}` failed: {failure}");
            }
            other => {
                let status = other
                    .as_str_name()
                    .trim_start_matches("ORCHESTRATION_STATUS_");
                tracing::info!(instance_id = %id, "orchestration `{name}` ended {status}");
            }
        }
    }
}

/// An episode's response that fails the orchestration with `failure`.
fn failed_response(
    instance_id: String,
    token: &str,
    failure: &FailureDetails,
) -> proto::OrchestratorResponse {
    let mut complete = proto::CompleteOrchestrationAction {
        failure_details: Some(failure.into()),
        ..Default::default()
    };
    complete.set_orchestration_status(proto::OrchestrationStatus::Failed);
    proto::OrchestratorResponse {
        instance_id,
        actions: vec![proto::OrchestratorAction {
            id: -1,
            orchestrator_action_type: Some(
                proto::orchestrator_action::OrchestratorActionType::CompleteOrchestration(complete),
            ),
        }],
        completion_token: token.to_owned(),
        ..Default::default()
    }
}

async fn fetch_history(
    client: &SidecarClient,
    request: &proto::OrchestratorRequest,
) -> Result<Vec<proto::HistoryEvent>, tonic::Status> {
    let request = proto::StreamInstanceHistoryRequest {
        instance_id: request.instance_id.clone(),
        execution_id: request.execution_id.clone(),
        for_work_item_processing: true,
    };
    crate::client::stream_history(client, request).await
}

/// Delivers a completion. When the sidecar refuses it for its size, delivers `replacement`
/// (a small failure saying so) instead. Returns `false` when nothing could be delivered and
/// the work item is still ours: the caller then abandons it, so it is never left in flight.
/// A sidecar that no longer knows the token (NOT_FOUND: it took the item back when this
/// worker's stream closed) already gave the work to another worker; there is nothing to abandon.
async fn complete_or_replace<R, F, Fut, T>(
    what: &str,
    response: R,
    replacement: impl FnOnce(&tonic::Status) -> R,
    send: F,
) -> bool
where
    R: Clone,
    F: Fn(R) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    match retry_completion(what, || send(response.clone())).await {
        Ok(()) => true,
        Err(status) if is_too_large(&status) => {
            let replacement = replacement(&status);
            retry_completion(what, || send(replacement.clone()))
                .await
                .is_ok()
        }
        Err(status) => status.code() == tonic::Code::NotFound,
    }
}

/// Sends a completion, retrying a few times while the sidecar is briefly unavailable; returns
/// the last error when it could not be delivered (the caller abandons the work item then).
async fn retry_completion<F, Fut, T>(what: &str, mut call: F) -> Result<(), tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    const ATTEMPTS: u32 = 3;
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(_) => return Ok(()),
            Err(status) if attempt < ATTEMPTS && status.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                attempt += 1;
            }
            Err(status) => {
                tracing::warn!("could not complete an {what} work item: {status}");
                return Err(status);
            }
        }
    }
}

/// The error type recorded when a result is too large for the sidecar to accept.
const PAYLOAD_TOO_LARGE_ERROR_TYPE: &str = "durable::PayloadTooLarge";

/// Whether the sidecar (or the transport) refused a message for its size.
fn is_too_large(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::ResourceExhausted | tonic::Code::OutOfRange
    )
}
