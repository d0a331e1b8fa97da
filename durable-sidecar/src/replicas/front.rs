//! The service a replica exposes: every call is answered by the partition it concerns —
//! here when this replica serves it, else forwarded to the replica that does (marked with
//! [`PARTITION_HEADER`], so it is never forwarded twice). Calls about no single instance fan
//! out (purge by filter, deleting the task hub) or go to any partition (queries read the whole
//! database). Worker streams are served here only: they receive the work of every partition
//! this replica serves, and complete it here.
//!
//! While a partition changes hands (a replica died or joined) calls for it wait and retry,
//! within the client's deadline and at most [`FAILOVER_BUDGET`]; a call that may have been
//! applied before its replica died is retried only when it is a read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status};

use super::{ReplicaSet, Served, Target, touch};
use crate::partitions::{ENTITY_PARTITION, PARTITIONS, partition_of};
use crate::proto::task_hub_sidecar_service_server::TaskHubSidecarService;
use crate::proto::{self, WorkItem, purge_instances_request, work_item};
use crate::server::{SidecarService, deadline};
use crate::time::now_ms;

/// Marks a forwarded call with the partition it is for.
const PARTITION_HEADER: &str = "x-durable-partition";

/// How long a call waits for its partition to be served again.
const FAILOVER_BUDGET: Duration = Duration::from_secs(30);

/// The refusal of a forwarded call for a partition this replica no longer serves.
const NOT_SERVED: &str = "is not served by this replica";

const HEALTH_PING_EVERY: Duration = Duration::from_secs(20);

/// Errors that say a call never reached a replica that could apply it: safe to retry.
fn never_applied(status: &Status) -> bool {
    let message = status.message();
    status.code() == Code::Unavailable
        && [
            NOT_SERVED,
            "shutting down",
            "tcp connect error",
            "error trying to connect",
            "Connection refused",
            "has no replica",
        ]
        .iter()
        .any(|hint| message.contains(hint))
}

/// Whether to retry a forwarded call that failed with `status`.
fn retryable(status: &Status, read: bool) -> bool {
    never_applied(status)
        || (read
            && matches!(
                status.code(),
                Code::Unavailable | Code::Unknown | Code::Cancelled
            ))
}

fn nobody(part: u32) -> Status {
    Status::unavailable(format!(
        "partition {part} has no replica serving it right now (one is taking it over); retry shortly"
    ))
}

/// Retry pacing within the call's budget.
struct Budget {
    until: tokio::time::Instant,
    pause: Duration,
}

impl Budget {
    fn new<T>(req: &Request<T>) -> Self {
        let most = tokio::time::Instant::now() + FAILOVER_BUDGET;
        Self {
            until: deadline(req).map_or(most, |d| d.min(most)),
            pause: Duration::from_millis(50),
        }
    }

    fn remaining(&self) -> Duration {
        self.until
            .saturating_duration_since(tokio::time::Instant::now())
    }

    /// Sleeps before the next attempt; `false` when the budget is spent.
    async fn wait(&mut self) -> bool {
        if self.remaining() <= self.pause {
            return false;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(500));
        true
    }
}

/// The partition a forwarded call names, if it was forwarded.
fn forwarded_to(metadata: &MetadataMap) -> Option<u32> {
    metadata.get(PARTITION_HEADER)?.to_str().ok()?.parse().ok()
}

/// Calls `$method` for partition `$part`: here if served here, else at its replica.
macro_rules! route {
    ($front:expr, $part:expr, $req:ident, $method:ident, read = $read:expr) => {{
        let front: &ReplicaFront = $front;
        let part: u32 = forwarded_to($req.metadata()).unwrap_or($part);
        let forwarded = forwarded_to($req.metadata()).is_some();
        let metadata = $req.metadata().clone();
        let message = $req.get_ref().clone();
        let mut budget = Budget::new(&$req);
        let mut first = Some($req);
        loop {
            let failure = match front.set.target(part) {
                Target::Local(served) => {
                    let req = first.take().unwrap_or_else(|| {
                        Request::from_parts(metadata.clone(), Default::default(), message.clone())
                    });
                    match front.service(&served).$method(req).await {
                        // The partition was handed back while the call ran.
                        Err(s)
                            if s.code() == Code::Unavailable
                                && !forwarded
                                && front.set.served_partition(part).is_none() =>
                        {
                            s
                        }
                        other => return other,
                    }
                }
                _ if forwarded => {
                    return Err(Status::unavailable(format!(
                        "partition {part} {NOT_SERVED}"
                    )));
                }
                Target::Remote(mut peer) => {
                    let req = front.forward(&metadata, message.clone(), part, budget.remaining());
                    match peer.$method(req).await {
                        Err(s) if retryable(&s, $read) => s,
                        other => return other,
                    }
                }
                Target::Nobody => nobody(part),
            };
            front.set.refresh_owners();
            if !budget.wait().await {
                return Err(failure);
            }
        }
    }};
}

/// The replica's `TaskHubSidecarService`.
pub(crate) struct ReplicaFront {
    pub(crate) set: Arc<ReplicaSet>,
    /// Called in-process (see `SidecarService::in_process`).
    pub(crate) in_process: bool,
}

impl ReplicaFront {
    fn service(&self, served: &Served) -> SidecarService {
        SidecarService {
            engine: Arc::clone(&served.engine),
            in_process: self.in_process,
        }
    }

    /// A call for another replica: the message, the caller's credentials, the partition it is
    /// for and what is left of its deadline.
    fn forward<T>(
        &self,
        metadata: &MetadataMap,
        message: T,
        part: u32,
        remaining: Duration,
    ) -> Request<T> {
        let mut req = Request::new(message);
        if let Some(auth) = metadata.get("authorization") {
            req.metadata_mut().insert("authorization", auth.clone());
        } else if let Some(token) = self.set.token() {
            if let Ok(value) = MetadataValue::try_from(format!("Bearer {token}")) {
                req.metadata_mut().insert("authorization", value);
            }
        }
        req.metadata_mut()
            .insert(PARTITION_HEADER, MetadataValue::from(part));
        req.set_timeout(remaining);
        req
    }

    /// A partition for calls any partition answers: one served here if any.
    fn any_partition(&self) -> u32 {
        self.set
            .any_served()
            .map_or(0, |served| served.partition.index)
    }

    /// The partition that issued a completion token, refusing tokens of partitions no
    /// longer served here.
    fn by_token(&self, token: &str, kind: &str) -> Result<Arc<Served>, Status> {
        if token.is_empty() {
            return Err(Status::invalid_argument(format!(
                "completionToken is empty: echo the completionToken of the {kind} work item"
            )));
        }
        self.set.by_token(token).ok_or_else(|| {
            Status::not_found(format!(
                "no {kind} work item is in flight under this completionToken: its partition moved to another replica, where it runs again"
            ))
        })
    }
}

/// Sums the deleted counts of per-partition purges.
fn add_counts(
    total: &mut proto::PurgeInstancesResponse,
    one: Result<Response<proto::PurgeInstancesResponse>, Status>,
) -> Result<(), Status> {
    total.deleted_instance_count += one?.into_inner().deleted_instance_count;
    Ok(())
}

impl ReplicaFront {
    async fn purge_one(
        &self,
        part: u32,
        req: Request<proto::PurgeInstancesRequest>,
    ) -> Result<Response<proto::PurgeInstancesResponse>, Status> {
        route!(self, part, req, purge_instances, read = false)
    }

    async fn delete_one(
        &self,
        part: u32,
        req: Request<proto::DeleteTaskHubRequest>,
    ) -> Result<Response<proto::DeleteTaskHubResponse>, Status> {
        route!(self, part, req, delete_task_hub, read = false)
    }

    /// A copy of `req` with the same credentials and deadline, for one partition.
    fn copy<T: Clone>(req: &Request<T>, message: T) -> Request<T> {
        Request::from_parts(req.metadata().clone(), Default::default(), message)
    }
}

#[tonic::async_trait]
impl TaskHubSidecarService for ReplicaFront {
    async fn hello(&self, _req: Request<()>) -> Result<Response<()>, Status> {
        if let Some(why) = self.set.unready() {
            return Err(Status::unavailable(why));
        }
        Ok(Response::new(()))
    }

    async fn start_instance(
        &self,
        mut req: Request<proto::CreateInstanceRequest>,
    ) -> Result<Response<proto::CreateInstanceResponse>, Status> {
        if req.get_ref().instance_id.is_empty() {
            req.get_mut().instance_id = uuid::Uuid::new_v4().simple().to_string();
        }
        let part = partition_of(&req.get_ref().instance_id, PARTITIONS);
        route!(self, part, req, start_instance, read = false)
    }

    async fn get_instance(
        &self,
        req: Request<proto::GetInstanceRequest>,
    ) -> Result<Response<proto::GetInstanceResponse>, Status> {
        let part = partition_of(&req.get_ref().instance_id, PARTITIONS);
        route!(self, part, req, get_instance, read = true)
    }

    async fn rewind_instance(
        &self,
        req: Request<proto::RewindInstanceRequest>,
    ) -> Result<Response<proto::RewindInstanceResponse>, Status> {
        let part = partition_of(&req.get_ref().instance_id, PARTITIONS);
        route!(self, part, req, rewind_instance, read = false)
    }

    async fn restart_instance(
        &self,
        req: Request<proto::RestartInstanceRequest>,
    ) -> Result<Response<proto::RestartInstanceResponse>, Status> {
        let part = partition_of(&req.get_ref().instance_id, PARTITIONS);
        route!(self, part, req, restart_instance, read = false)
    }

    async fn wait_for_instance_start(
        &self,
        req: Request<proto::GetInstanceRequest>,
    ) -> Result<Response<proto::GetInstanceResponse>, Status> {
        let part = partition_of(&req.get_ref().instance_id, PARTITIONS);
        route!(self, part, req, wait_for_instance_start, read = true)
    }

    async fn wait_for_instance_completion(
        &self,
        req: Request<proto::GetInstanceRequest>,
    ) -> Result<Response<proto::GetInstanceResponse>, Status> {
        let part = partition_of(&req.get_ref().instance_id, PARTITIONS);
        route!(self, part, req, wait_for_instance_completion, read = true)
    }

    async fn raise_event(
        &self,
        req: Request<proto::RaiseEventRequest>,
    ) -> Result<Response<proto::RaiseEventResponse>, Status> {
        let part = partition_of(&req.get_ref().instance_id, PARTITIONS);
        route!(self, part, req, raise_event, read = false)
    }

    async fn terminate_instance(
        &self,
        req: Request<proto::TerminateRequest>,
    ) -> Result<Response<proto::TerminateResponse>, Status> {
        let part = partition_of(&req.get_ref().instance_id, PARTITIONS);
        route!(self, part, req, terminate_instance, read = false)
    }

    async fn suspend_instance(
        &self,
        req: Request<proto::SuspendRequest>,
    ) -> Result<Response<proto::SuspendResponse>, Status> {
        let part = partition_of(&req.get_ref().instance_id, PARTITIONS);
        route!(self, part, req, suspend_instance, read = false)
    }

    async fn resume_instance(
        &self,
        req: Request<proto::ResumeRequest>,
    ) -> Result<Response<proto::ResumeResponse>, Status> {
        let part = partition_of(&req.get_ref().instance_id, PARTITIONS);
        route!(self, part, req, resume_instance, read = false)
    }

    async fn query_instances(
        &self,
        req: Request<proto::QueryInstancesRequest>,
    ) -> Result<Response<proto::QueryInstancesResponse>, Status> {
        let part = self.any_partition();
        route!(self, part, req, query_instances, read = true)
    }

    async fn list_instance_ids(
        &self,
        req: Request<proto::ListInstanceIdsRequest>,
    ) -> Result<Response<proto::ListInstanceIdsResponse>, Status> {
        let part = self.any_partition();
        route!(self, part, req, list_instance_ids, read = true)
    }

    async fn purge_instances(
        &self,
        req: Request<proto::PurgeInstancesRequest>,
    ) -> Result<Response<proto::PurgeInstancesResponse>, Status> {
        if let Some(part) = forwarded_to(req.metadata()) {
            return self.purge_one(part, req).await;
        }
        let message = req.get_ref().clone();
        let mut total = proto::PurgeInstancesResponse {
            deleted_instance_count: 0,
            is_complete: Some(true),
        };
        match &message.request {
            Some(purge_instances_request::Request::InstanceId(id)) => {
                return self.purge_one(partition_of(id, PARTITIONS), req).await;
            }
            Some(purge_instances_request::Request::InstanceBatch(batch)) => {
                let mut by_part: BTreeMap<u32, Vec<String>> = BTreeMap::new();
                for id in &batch.instance_ids {
                    by_part
                        .entry(partition_of(id, PARTITIONS))
                        .or_default()
                        .push(id.clone());
                }
                for (part, ids) in by_part {
                    let mut one = message.clone();
                    one.request = Some(purge_instances_request::Request::InstanceBatch(
                        proto::InstanceBatch { instance_ids: ids },
                    ));
                    add_counts(
                        &mut total,
                        self.purge_one(part, Self::copy(&req, one)).await,
                    )?;
                }
            }
            // A filter (or nothing, which every partition refuses alike): every partition
            // purges its own instances.
            _ => {
                for part in 0..PARTITIONS {
                    let one = Self::copy(&req, message.clone());
                    add_counts(&mut total, self.purge_one(part, one).await)?;
                }
            }
        }
        Ok(Response::new(total))
    }

    type GetWorkItemsStream = proto::ResponseStream<WorkItem>;

    async fn get_work_items(
        &self,
        req: Request<proto::GetWorkItemsRequest>,
    ) -> Result<Response<Self::GetWorkItemsStream>, Status> {
        let held = crate::connections::activity_of(&req).map(crate::connections::Activity::hold);
        let request = req.into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let last_send = Arc::new(AtomicI64::new(now_ms()));
        let id = self
            .set
            .open_stream(tx.clone(), request, Arc::clone(&last_send), self.in_process);
        // Health pings, as a single sidecar sends them (see `server::get_work_items`).
        let mut stop = self.set.shutdown.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(HEALTH_PING_EVERY) => {}
                    _ = tx.closed() => break,
                    _ = stop.changed() => break,
                }
                let idle = now_ms() - last_send.load(std::sync::atomic::Ordering::Relaxed);
                if idle >= 15_000 {
                    let ping = WorkItem {
                        request: Some(work_item::Request::HealthPing(proto::HealthPing {})),
                        completion_token: String::new(),
                    };
                    if tx.send(Ok(ping)).is_err() {
                        break;
                    }
                    touch(&last_send);
                }
            }
        });
        let guard = StreamGuard {
            set: Arc::clone(&self.set),
            id,
            _held: held,
        };
        let mut stop = self.set.shutdown.subscribe();
        let items = tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
            .map(move |item| {
                let _ = &guard;
                item
            })
            .take_while(move |_| !*stop.borrow_and_update());
        Ok(Response::new(Box::pin(items)))
    }

    async fn complete_activity_task(
        &self,
        req: Request<proto::ActivityResponse>,
    ) -> Result<Response<proto::CompleteTaskResponse>, Status> {
        let served = self.by_token(&req.get_ref().completion_token, "activity")?;
        self.service(&served).complete_activity_task(req).await
    }

    async fn complete_orchestrator_task(
        &self,
        req: Request<proto::OrchestratorResponse>,
    ) -> Result<Response<proto::CompleteTaskResponse>, Status> {
        let served = self.by_token(&req.get_ref().completion_token, "orchestration")?;
        self.service(&served).complete_orchestrator_task(req).await
    }

    async fn complete_entity_task(
        &self,
        req: Request<proto::EntityBatchResult>,
    ) -> Result<Response<proto::CompleteTaskResponse>, Status> {
        let served = self.by_token(&req.get_ref().completion_token, "entity")?;
        self.service(&served).complete_entity_task(req).await
    }

    type StreamInstanceHistoryStream = proto::ResponseStream<proto::HistoryChunk>;

    async fn stream_instance_history(
        &self,
        req: Request<proto::StreamInstanceHistoryRequest>,
    ) -> Result<Response<Self::StreamInstanceHistoryStream>, Status> {
        let part = forwarded_to(req.metadata())
            .unwrap_or_else(|| partition_of(&req.get_ref().instance_id, PARTITIONS));
        let forwarded = forwarded_to(req.metadata()).is_some();
        let mut budget = Budget::new(&req);
        let metadata = req.metadata().clone();
        let message = req.get_ref().clone();
        let mut first = Some(req);
        loop {
            let failure = match self.set.target(part) {
                Target::Local(served) => {
                    let req = first
                        .take()
                        .unwrap_or_else(|| Self::copy_from(&metadata, message.clone()));
                    return self.service(&served).stream_instance_history(req).await;
                }
                _ if forwarded => {
                    return Err(Status::unavailable(format!(
                        "partition {part} {NOT_SERVED}"
                    )));
                }
                Target::Remote(mut peer) => {
                    let req = self.forward(&metadata, message.clone(), part, budget.remaining());
                    match peer.stream_instance_history(req).await {
                        Ok(response) => {
                            let (metadata, stream, extensions) = response.into_parts();
                            let stream: Self::StreamInstanceHistoryStream = Box::pin(stream);
                            return Ok(Response::from_parts(metadata, stream, extensions));
                        }
                        Err(s) if retryable(&s, true) => s,
                        Err(s) => return Err(s),
                    }
                }
                Target::Nobody => nobody(part),
            };
            self.set.refresh_owners();
            if !budget.wait().await {
                return Err(failure);
            }
        }
    }

    async fn create_task_hub(
        &self,
        req: Request<proto::CreateTaskHubRequest>,
    ) -> Result<Response<proto::CreateTaskHubResponse>, Status> {
        // One implicit task hub: creating it is a no-op, recreating it empties it.
        if req.get_ref().recreate_if_exists {
            let delete = Self::copy_from(req.metadata(), proto::DeleteTaskHubRequest {});
            self.delete_task_hub(delete).await?;
        }
        Ok(Response::new(proto::CreateTaskHubResponse {}))
    }

    async fn delete_task_hub(
        &self,
        req: Request<proto::DeleteTaskHubRequest>,
    ) -> Result<Response<proto::DeleteTaskHubResponse>, Status> {
        if let Some(part) = forwarded_to(req.metadata()) {
            return self.delete_one(part, req).await;
        }
        for part in 0..PARTITIONS {
            self.delete_one(part, Self::copy(&req, proto::DeleteTaskHubRequest {}))
                .await?;
        }
        Ok(Response::new(proto::DeleteTaskHubResponse {}))
    }

    async fn signal_entity(
        &self,
        req: Request<proto::SignalEntityRequest>,
    ) -> Result<Response<proto::SignalEntityResponse>, Status> {
        route!(self, ENTITY_PARTITION, req, signal_entity, read = false)
    }

    async fn get_entity(
        &self,
        req: Request<proto::GetEntityRequest>,
    ) -> Result<Response<proto::GetEntityResponse>, Status> {
        route!(self, ENTITY_PARTITION, req, get_entity, read = true)
    }

    async fn query_entities(
        &self,
        req: Request<proto::QueryEntitiesRequest>,
    ) -> Result<Response<proto::QueryEntitiesResponse>, Status> {
        route!(self, ENTITY_PARTITION, req, query_entities, read = true)
    }

    async fn clean_entity_storage(
        &self,
        req: Request<proto::CleanEntityStorageRequest>,
    ) -> Result<Response<proto::CleanEntityStorageResponse>, Status> {
        route!(
            self,
            ENTITY_PARTITION,
            req,
            clean_entity_storage,
            read = false
        )
    }

    async fn abandon_task_activity_work_item(
        &self,
        req: Request<proto::AbandonActivityTaskRequest>,
    ) -> Result<Response<proto::AbandonActivityTaskResponse>, Status> {
        let served = self.by_token(&req.get_ref().completion_token, "activity")?;
        self.service(&served)
            .abandon_task_activity_work_item(req)
            .await
    }

    async fn abandon_task_orchestrator_work_item(
        &self,
        req: Request<proto::AbandonOrchestrationTaskRequest>,
    ) -> Result<Response<proto::AbandonOrchestrationTaskResponse>, Status> {
        let served = self.by_token(&req.get_ref().completion_token, "orchestration")?;
        self.service(&served)
            .abandon_task_orchestrator_work_item(req)
            .await
    }

    async fn abandon_task_entity_work_item(
        &self,
        req: Request<proto::AbandonEntityTaskRequest>,
    ) -> Result<Response<proto::AbandonEntityTaskResponse>, Status> {
        let served = self.by_token(&req.get_ref().completion_token, "entity")?;
        self.service(&served)
            .abandon_task_entity_work_item(req)
            .await
    }

    async fn skip_graceful_orchestration_terminations(
        &self,
        _req: Request<proto::SkipGracefulOrchestrationTerminationsRequest>,
    ) -> Result<Response<proto::SkipGracefulOrchestrationTerminationsResponse>, Status> {
        Err(Status::unimplemented(
            "SkipGracefulOrchestrationTerminations is not supported; use TerminateInstance",
        ))
    }
}

impl ReplicaFront {
    fn copy_from<T>(metadata: &MetadataMap, message: T) -> Request<T> {
        Request::from_parts(metadata.clone(), Default::default(), message)
    }
}

/// Disconnects a worker stream from every partition when the worker goes.
struct StreamGuard {
    set: Arc<ReplicaSet>,
    id: u64,
    _held: Option<crate::connections::Held>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.set.close_stream(self.id);
    }
}
