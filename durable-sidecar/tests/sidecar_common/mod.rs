//! Helpers for the sidecar integration tests: a gRPC client and a hand-driven worker.

#![allow(dead_code, unreachable_pub)]

pub mod postgres;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient;
use durable_proto::{
    self as proto, CompleteOrchestrationAction, CreateInstanceRequest, GetInstanceRequest,
    HistoryEvent, OrchestratorAction, OrchestratorResponse, WorkItem, history_event::EventType,
    orchestrator_action::OrchestratorActionType, work_item,
};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub type Client = TaskHubSidecarServiceClient<Channel>;

pub async fn client(endpoint: String) -> Client {
    TaskHubSidecarServiceClient::connect(endpoint)
        .await
        .expect("connect to the sidecar")
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

pub fn now_ts(offset: Duration) -> prost_types::Timestamp {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock") + offset;
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

pub async fn start(c: &mut Client, id: &str, name: &str, input: Option<&str>) -> String {
    c.start_instance(CreateInstanceRequest {
        instance_id: id.to_string(),
        name: name.to_string(),
        input: input.map(str::to_string),
        ..Default::default()
    })
    .await
    .expect("start instance")
    .into_inner()
    .instance_id
}

pub async fn get(c: &mut Client, id: &str) -> Option<proto::OrchestrationState> {
    let r = c
        .get_instance(GetInstanceRequest {
            instance_id: id.to_string(),
            get_inputs_and_outputs: true,
        })
        .await
        .expect("get instance")
        .into_inner();
    r.exists.then_some(r.orchestration_state).flatten()
}

pub async fn wait_done(c: &mut Client, id: &str) -> proto::OrchestrationState {
    let mut req = tonic::Request::new(GetInstanceRequest {
        instance_id: id.to_string(),
        get_inputs_and_outputs: true,
    });
    req.set_timeout(Duration::from_secs(20));
    c.wait_for_instance_completion(req)
        .await
        .expect("wait for completion")
        .into_inner()
        .orchestration_state
        .expect("instance exists")
}

/// A worker driven by hand: read work items, answer with chosen actions.
pub struct Worker {
    pub client: Client,
    pub stream: tonic::Streaming<WorkItem>,
}

impl Worker {
    pub async fn connect(endpoint: String) -> Self {
        Self::connect_with(endpoint, proto::GetWorkItemsRequest::default()).await
    }

    /// A worker that sends its own `GetWorkItems` request (capacity hints, filters, capabilities).
    pub async fn connect_with(endpoint: String, req: proto::GetWorkItemsRequest) -> Self {
        let mut client = client(endpoint).await;
        let stream = client
            .get_work_items(req)
            .await
            .expect("open work item stream")
            .into_inner();
        Self { client, stream }
    }

    /// The next work item that is not a health ping, or `None` if none arrives within `wait`.
    pub async fn try_next(&mut self, wait: Duration) -> Option<WorkItem> {
        loop {
            let item = tokio::time::timeout(wait, self.stream.message())
                .await
                .ok()?
                .expect("work item stream failed")?;
            if !matches!(item.request, Some(work_item::Request::HealthPing(_))) {
                return Some(item);
            }
        }
    }

    pub async fn next(&mut self) -> WorkItem {
        self.try_next(Duration::from_secs(20))
            .await
            .expect("expected a work item")
    }

    pub async fn next_orchestration(&mut self) -> (proto::OrchestratorRequest, String) {
        let item = self.next().await;
        match item.request {
            Some(work_item::Request::OrchestratorRequest(r)) => (r, item.completion_token),
            other => panic!("expected an orchestration work item, got {other:?}"),
        }
    }

    pub async fn next_activity(&mut self) -> (proto::ActivityRequest, String) {
        let item = self.next().await;
        match item.request {
            Some(work_item::Request::ActivityRequest(r)) => (r, item.completion_token),
            other => panic!("expected an activity work item, got {other:?}"),
        }
    }

    pub async fn complete(
        &mut self,
        instance_id: &str,
        token: String,
        actions: Vec<OrchestratorAction>,
    ) {
        self.client
            .complete_orchestrator_task(OrchestratorResponse {
                instance_id: instance_id.to_string(),
                actions,
                completion_token: token,
                ..Default::default()
            })
            .await
            .expect("complete orchestrator task");
    }

    pub async fn complete_activity(
        &mut self,
        req: &proto::ActivityRequest,
        token: String,
        result: &str,
    ) {
        self.client
            .complete_activity_task(proto::ActivityResponse {
                instance_id: req
                    .orchestration_instance
                    .as_ref()
                    .map(|i| i.instance_id.clone())
                    .unwrap_or_default(),
                task_id: req.task_id,
                result: Some(result.to_string()),
                failure_details: None,
                completion_token: token,
            })
            .await
            .expect("complete activity task");
    }
}

/// The whole history of an instance, read through `StreamInstanceHistory`.
pub async fn history(c: &mut Client, id: &str) -> Vec<HistoryEvent> {
    let mut chunks = c
        .stream_instance_history(proto::StreamInstanceHistoryRequest {
            instance_id: id.into(),
            ..Default::default()
        })
        .await
        .expect("stream history")
        .into_inner();
    let mut events = Vec::new();
    while let Some(chunk) = chunks.message().await.expect("history chunk") {
        events.extend(chunk.events);
    }
    events
}

pub fn kinds(events: &[HistoryEvent]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match &e.event_type {
            Some(EventType::OrchestratorStarted(_)) => "OrchestratorStarted",
            Some(EventType::ExecutionStarted(_)) => "ExecutionStarted",
            Some(EventType::ExecutionCompleted(_)) => "ExecutionCompleted",
            Some(EventType::ExecutionTerminated(_)) => "ExecutionTerminated",
            Some(EventType::TaskScheduled(_)) => "TaskScheduled",
            Some(EventType::TaskCompleted(_)) => "TaskCompleted",
            Some(EventType::TaskFailed(_)) => "TaskFailed",
            Some(EventType::TimerCreated(_)) => "TimerCreated",
            Some(EventType::TimerFired(_)) => "TimerFired",
            Some(EventType::EventRaised(_)) => "EventRaised",
            Some(EventType::EventSent(_)) => "EventSent",
            Some(EventType::ExecutionSuspended(_)) => "ExecutionSuspended",
            Some(EventType::ExecutionResumed(_)) => "ExecutionResumed",
            _ => "Other",
        })
        .collect()
}

pub fn schedule(id: i32, name: &str, input: &str) -> OrchestratorAction {
    OrchestratorAction {
        id,
        orchestrator_action_type: Some(OrchestratorActionType::ScheduleTask(
            proto::ScheduleTaskAction {
                name: name.to_string(),
                input: Some(input.to_string()),
                ..Default::default()
            },
        )),
    }
}

pub fn timer(id: i32, fire_at: prost_types::Timestamp) -> OrchestratorAction {
    OrchestratorAction {
        id,
        orchestrator_action_type: Some(OrchestratorActionType::CreateTimer(
            proto::CreateTimerAction {
                fire_at: Some(fire_at),
            },
        )),
    }
}

pub fn finish(id: i32, status: proto::OrchestrationStatus, result: &str) -> OrchestratorAction {
    OrchestratorAction {
        id,
        orchestrator_action_type: Some(OrchestratorActionType::CompleteOrchestration(
            CompleteOrchestrationAction {
                orchestration_status: status as i32,
                result: Some(result.to_string()),
                ..Default::default()
            },
        )),
    }
}

/// Where a test's sidecar keeps its state: each test of the RPC suites runs on every backend.
pub enum Backend {
    Memory,
    /// A database file in its own temp dir (removed on drop).
    Sqlite(TempDir),
    /// A throwaway server and the URL of the test's database on it.
    Postgres(postgres::TempPostgres, String),
}

impl Backend {
    /// A fresh PostgreSQL database, or `None` when PostgreSQL is not installed (the test then
    /// reports that it did not run).
    pub fn postgres() -> Option<Self> {
        // `RUST_LOG=durable_sidecar=debug` shows what the replicas do.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let pg = postgres::TempPostgres::start()?;
        let url = pg.database("suite");
        Some(Self::Postgres(pg, url))
    }

    /// A fresh SQLite file.
    pub fn sqlite() -> Self {
        Self::Sqlite(TempDir::new("suite"))
    }

    /// A sidecar builder on this backend.
    pub fn builder(&self) -> durable_sidecar::SidecarBuilder {
        let builder = durable_sidecar::SidecarBuilder::new();
        match self {
            Self::Memory => builder.in_memory(),
            Self::Sqlite(dir) => builder.sqlite(dir.0.join("suite.db")),
            Self::Postgres(_, url) => builder.postgres(url),
        }
    }
}

/// A temp directory, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "durable-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the async test fn `$name(backend)` once per backend: `$name::memory`,
/// `$name::sqlite` and `$name::postgres`.
#[macro_export]
macro_rules! on_every_backend {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$name(super::common::Backend::Memory).await;
            }

            #[tokio::test]
            async fn sqlite() {
                super::$name(super::common::Backend::sqlite()).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(backend) = super::common::Backend::postgres() {
                    super::$name(backend).await;
                }
            }
        }
    };
}

/// What the standard gRPC health service at `endpoint` says of `service` (`""`: the server).
pub async fn health(endpoint: &str, service: &str) -> Result<ServingStatus, tonic::Status> {
    let channel = Channel::from_shared(endpoint.to_owned())
        .expect("a valid endpoint")
        .connect()
        .await
        .expect("connect to the health service");
    let mut c = HealthClient::new(channel);
    let reply = c
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?;
    Ok(reply.into_inner().status())
}

/// Waits up to `within` until the health service says `want` of the whole server.
pub async fn wait_for_health(endpoint: &str, want: ServingStatus, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let now = health(endpoint, "").await.expect("a health answer");
        if now == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "health stayed {now:?}, expected {want:?} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
