//! The tonic service: validates requests, calls the engine, maps results to gRPC statuses.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::connections::{Activity, Held, activity_of};
use crate::engine::{
    CommitWait, Engine, EntityFilter, NewInstance, canonical_entity_id, check_length, is_terminal,
};
use crate::proto::task_hub_sidecar_service_server::TaskHubSidecarService;
use crate::proto::{self, OrchestrationStatus, WorkItem, purge_instances_request, work_item};
use crate::storage::{CompletedQuery, InstanceQuery};
use crate::time::{given_ms, now_ms, to_ms};
use crate::work_queue::{Filters, WorkKind, WorkStream};

const HEALTH_PING_EVERY: Duration = Duration::from_secs(20);
const HISTORY_CHUNK: usize = 100;
const DEFAULT_PAGE: usize = 100;
/// Instances per QueryInstances page when the client asks for no page size.
const DEFAULT_QUERY_PAGE: usize = 1000;

/// Parses a paging key this sidecar issued: `{ms}|{instance id}`.
fn page_key(token: Option<&str>, field: &str) -> Result<Option<(i64, String)>, Status> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let bad = || {
        Status::invalid_argument(format!(
            "{field} '{token}' was not issued by this sidecar; pass the value from the previous page"
        ))
    };
    let (ms, id) = token.split_once('|').ok_or_else(bad)?;
    let ms: i64 = ms.parse().map_err(|_| bad())?;
    Ok(Some((ms, id.to_owned())))
}

pub(crate) struct SidecarService {
    pub(crate) engine: Arc<Engine>,
    /// Called in-process (values, no decoding): the message size limit gRPC's decoder
    /// enforces is checked here instead, so both paths accept and refuse the same messages.
    pub(crate) in_process: bool,
}

impl SidecarService {
    /// Refuses, as gRPC's decoder does (OUT_OF_RANGE), a message over the size limit that
    /// came in-process.
    fn within_limit<T: prost::Message>(&self, req: &Request<T>) -> Result<(), Status> {
        if !self.in_process {
            return Ok(());
        }
        let len = req.get_ref().encoded_len();
        if len > crate::MAX_MESSAGE_BYTES {
            return Err(Status::out_of_range(format!(
                "Error, decoded message length too large: found {len} bytes, the limit is: {} bytes",
                crate::MAX_MESSAGE_BYTES
            )));
        }
        Ok(())
    }

    /// Runs `op` on one instance; when it finds no such instance, applies what other
    /// partitions sent (one may have just created it, as a sub-orchestration) and runs it
    /// once more, so a replica answers as one sidecar would.
    async fn on_instance<T>(&self, op: impl Fn(&Engine) -> Result<T, Status>) -> Result<T, Status> {
        match op(&self.engine) {
            Err(e) if e.code() == tonic::Code::NotFound => {
                if self.engine.catch_up().await? {
                    op(&self.engine)
                } else {
                    Err(e)
                }
            }
            done => done,
        }
    }
}

pub(crate) async fn committed(wait: CommitWait) -> Result<(), Status> {
    match wait.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Status::unavailable(format!(
            "the sidecar could not persist the change: {e}"
        ))),
        Err(_) => Err(Status::unavailable(
            "the sidecar storage stopped before the change was persisted",
        )),
    }
}

fn require_id(id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument("instanceId must not be empty"));
    }
    check_length("instanceId", id)
}

/// The client's deadline from the `grpc-timeout` header, a little early so we answer
/// DEADLINE_EXCEEDED before the transport cancels the call.
pub(crate) fn deadline<T>(req: &Request<T>) -> Option<tokio::time::Instant> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    let d = d.saturating_sub(Duration::from_millis(25));
    tokio::time::Instant::now().checked_add(d)
}

/// An entity id prefix with its name part lower-cased (`@Counter@` → `@counter@`), as ids
/// are stored.
fn canonical_prefix(prefix: &str) -> String {
    match prefix.strip_prefix('@') {
        Some(rest) => match rest.split_once('@') {
            Some((name, key)) => format!("@{}@{key}", name.to_lowercase()),
            None => format!("@{}", rest.to_lowercase()),
        },
        None => prefix.to_owned(),
    }
}

/// The work-item stream; dropping it (client gone) requeues the stream's in-flight work.
pub(crate) struct WorkItemStream {
    rx: mpsc::UnboundedReceiver<Result<WorkItem, Status>>,
    engine: Arc<Engine>,
    id: u64,
    /// The connection is not idle while the stream is open.
    _held: Option<Held>,
}

impl Stream for WorkItemStream {
    type Item = Result<WorkItem, Status>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for WorkItemStream {
    fn drop(&mut self) {
        self.engine.remove_stream(self.id);
    }
}

#[tonic::async_trait]
impl TaskHubSidecarService for SidecarService {
    async fn hello(&self, _req: Request<()>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn start_instance(
        &self,
        req: Request<proto::CreateInstanceRequest>,
    ) -> Result<Response<proto::CreateInstanceResponse>, Status> {
        self.within_limit(&req)?;
        let r = req.into_inner();
        if r.name.is_empty() {
            return Err(Status::invalid_argument(
                "name (the orchestrator name) must not be empty",
            ));
        }
        let instance_id = if r.instance_id.is_empty() {
            uuid::Uuid::new_v4().simple().to_string()
        } else {
            r.instance_id
        };
        check_length("the instance id", &instance_id)?;
        check_length("the orchestrator name", &r.name)?;
        if instance_id.starts_with('@') {
            return Err(Status::invalid_argument(format!(
                "instance id '{instance_id}' starts with '@', which is reserved for entity ids (`@name@key`); choose another id"
            )));
        }
        let replaceable = r
            .orchestration_id_reuse_policy
            .map(|p| p.replaceable_status)
            .unwrap_or_default();
        let ni = NewInstance {
            instance_id,
            name: r.name,
            version: r.version,
            input: r.input,
            execution_id: r.execution_id.filter(|e| !e.is_empty()),
            scheduled_start_ms: given_ms(r.scheduled_start_timestamp.as_ref()),
            tags: r.tags,
            parent: None,
            parent_trace_context: r.parent_trace_context,
        };
        let stored = self.engine.stored_status(&ni.instance_id).await?;
        let (id, wait) = self.engine.start_instance(ni, &replaceable, stored)?;
        committed(wait).await?;
        Ok(Response::new(proto::CreateInstanceResponse {
            instance_id: id,
        }))
    }

    async fn get_instance(
        &self,
        req: Request<proto::GetInstanceRequest>,
    ) -> Result<Response<proto::GetInstanceResponse>, Status> {
        let deadline = deadline(&req);
        let r = req.into_inner();
        // Answers with the committed status: waits (briefly) for an uncommitted change.
        let state = self
            .engine
            .wait_for(&r.instance_id, r.get_inputs_and_outputs, deadline, |_| true)
            .await?;
        Ok(Response::new(proto::GetInstanceResponse {
            exists: state.is_some(),
            orchestration_state: state,
        }))
    }

    async fn rewind_instance(
        &self,
        req: Request<proto::RewindInstanceRequest>,
    ) -> Result<Response<proto::RewindInstanceResponse>, Status> {
        self.within_limit(&req)?;
        let r = req.into_inner();
        require_id(&r.instance_id)?;
        let wait = self
            .on_instance(|e| e.rewind(&r.instance_id, r.reason.clone()))
            .await?;
        committed(wait).await?;
        Ok(Response::new(proto::RewindInstanceResponse {}))
    }

    async fn restart_instance(
        &self,
        req: Request<proto::RestartInstanceRequest>,
    ) -> Result<Response<proto::RestartInstanceResponse>, Status> {
        self.within_limit(&req)?;
        let r = req.into_inner();
        require_id(&r.instance_id)?;
        let (id, wait) = self
            .on_instance(|e| e.restart(&r.instance_id, r.restart_with_new_instance_id))
            .await?;
        committed(wait).await?;
        Ok(Response::new(proto::RestartInstanceResponse {
            instance_id: id,
        }))
    }

    async fn wait_for_instance_start(
        &self,
        req: Request<proto::GetInstanceRequest>,
    ) -> Result<Response<proto::GetInstanceResponse>, Status> {
        let _held = activity_of(&req).map(Activity::hold);
        let deadline = deadline(&req);
        let r = req.into_inner();
        let state = self
            .engine
            .wait_for(&r.instance_id, r.get_inputs_and_outputs, deadline, |s| {
                s != OrchestrationStatus::Pending as i32
            })
            .await?;
        Ok(Response::new(proto::GetInstanceResponse {
            exists: state.is_some(),
            orchestration_state: state,
        }))
    }

    async fn wait_for_instance_completion(
        &self,
        req: Request<proto::GetInstanceRequest>,
    ) -> Result<Response<proto::GetInstanceResponse>, Status> {
        let _held = activity_of(&req).map(Activity::hold);
        let deadline = deadline(&req);
        let r = req.into_inner();
        let state = self
            .engine
            .wait_for(
                &r.instance_id,
                r.get_inputs_and_outputs,
                deadline,
                is_terminal,
            )
            .await?;
        Ok(Response::new(proto::GetInstanceResponse {
            exists: state.is_some(),
            orchestration_state: state,
        }))
    }

    async fn raise_event(
        &self,
        req: Request<proto::RaiseEventRequest>,
    ) -> Result<Response<proto::RaiseEventResponse>, Status> {
        self.within_limit(&req)?;
        let r = req.into_inner();
        require_id(&r.instance_id)?;
        let wait = self
            .on_instance(|e| e.raise_event(&r.instance_id, r.name.clone(), r.input.clone()))
            .await?;
        committed(wait).await?;
        Ok(Response::new(proto::RaiseEventResponse {}))
    }

    async fn terminate_instance(
        &self,
        req: Request<proto::TerminateRequest>,
    ) -> Result<Response<proto::TerminateResponse>, Status> {
        self.within_limit(&req)?;
        let r = req.into_inner();
        require_id(&r.instance_id)?;
        let wait = self
            .on_instance(|e| e.terminate(&r.instance_id, r.output.clone(), r.recursive))
            .await?;
        committed(wait).await?;
        Ok(Response::new(proto::TerminateResponse {}))
    }

    async fn suspend_instance(
        &self,
        req: Request<proto::SuspendRequest>,
    ) -> Result<Response<proto::SuspendResponse>, Status> {
        let r = req.into_inner();
        require_id(&r.instance_id)?;
        let wait = self
            .on_instance(|e| e.suspend_resume(&r.instance_id, r.reason.clone(), true))
            .await?;
        committed(wait).await?;
        Ok(Response::new(proto::SuspendResponse {}))
    }

    async fn resume_instance(
        &self,
        req: Request<proto::ResumeRequest>,
    ) -> Result<Response<proto::ResumeResponse>, Status> {
        let r = req.into_inner();
        require_id(&r.instance_id)?;
        let wait = self
            .on_instance(|e| e.suspend_resume(&r.instance_id, r.reason.clone(), false))
            .await?;
        committed(wait).await?;
        Ok(Response::new(proto::ResumeResponse {}))
    }

    async fn query_instances(
        &self,
        req: Request<proto::QueryInstancesRequest>,
    ) -> Result<Response<proto::QueryInstancesResponse>, Status> {
        let q = req.into_inner().query.unwrap_or_default();
        let page = usize::try_from(q.max_instance_count)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_QUERY_PAGE);
        let query = InstanceQuery {
            statuses: q.runtime_status.clone(),
            created_from: given_ms(q.created_time_from.as_ref()),
            created_to: given_ms(q.created_time_to.as_ref()),
            prefix: q.instance_id_prefix.clone().filter(|p| !p.is_empty()),
            after: page_key(q.continuation_token.as_deref(), "continuationToken")?,
            // One more than the page tells whether another page follows.
            limit: page.saturating_add(1),
        };
        let mut states = self.engine.query(query, q.fetch_inputs_and_outputs).await?;
        let more = states.len() > page;
        states.truncate(page);
        let continuation_token = more
            .then(|| {
                states.last().map(|s| {
                    let created = s.created_timestamp.as_ref().map_or(0, to_ms);
                    format!("{created}|{}", s.instance_id)
                })
            })
            .flatten();
        Ok(Response::new(proto::QueryInstancesResponse {
            orchestration_state: states,
            continuation_token,
        }))
    }

    async fn list_instance_ids(
        &self,
        req: Request<proto::ListInstanceIdsRequest>,
    ) -> Result<Response<proto::ListInstanceIdsResponse>, Status> {
        let r = req.into_inner();
        let page = usize::try_from(r.page_size)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_PAGE);
        let query = CompletedQuery {
            statuses: r.runtime_status.clone(),
            completed_from: given_ms(r.completed_time_from.as_ref()),
            completed_to: given_ms(r.completed_time_to.as_ref()),
            after: page_key(r.last_instance_key.as_deref(), "lastInstanceKey")?,
            limit: page.saturating_add(1),
        };
        let mut keys = self.engine.completed_ids(query).await?;
        let more = keys.len() > page;
        keys.truncate(page);
        let last_instance_key = more
            .then(|| keys.last().map(|(c, i)| format!("{c}|{i}")))
            .flatten();
        Ok(Response::new(proto::ListInstanceIdsResponse {
            instance_ids: keys.into_iter().map(|(_, i)| i).collect(),
            last_instance_key,
        }))
    }

    async fn purge_instances(
        &self,
        req: Request<proto::PurgeInstancesRequest>,
    ) -> Result<Response<proto::PurgeInstancesResponse>, Status> {
        let r = req.into_inner();
        let one = matches!(
            r.request,
            Some(purge_instances_request::Request::InstanceId(_))
        );
        let ids = match r.request {
            Some(purge_instances_request::Request::InstanceId(id)) => vec![id],
            Some(purge_instances_request::Request::InstanceBatch(b)) => b.instance_ids,
            Some(purge_instances_request::Request::PurgeInstanceFilter(f)) => {
                let mut ids = self
                    .engine
                    .purge_candidates(
                        given_ms(f.created_time_from.as_ref()),
                        given_ms(f.created_time_to.as_ref()),
                        &f.runtime_status,
                    )
                    .await?;
                // A partition's engine purges its own instances (the others purge theirs).
                ids.retain(|id| self.engine.serves(id));
                ids
            }
            None => {
                return Err(Status::invalid_argument(
                    "give an instanceId, a purgeInstanceFilter or an instanceBatch",
                ));
            }
        };
        let (count, wait) = self.engine.purge(ids, r.recursive, one)?;
        committed(wait).await?;
        Ok(Response::new(proto::PurgeInstancesResponse {
            deleted_instance_count: count,
            is_complete: Some(true),
        }))
    }

    type GetWorkItemsStream = proto::ResponseStream<WorkItem>;

    async fn get_work_items(
        &self,
        req: Request<proto::GetWorkItemsRequest>,
    ) -> Result<Response<Self::GetWorkItemsStream>, Status> {
        let held = activity_of(&req).map(Activity::hold);
        let r = req.into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let last_send = Arc::new(AtomicI64::new(now_ms()));
        let id = self.engine.add_stream(
            WorkStream::new(
                tx.clone(),
                Filters::from_request(&r),
                &r,
                Arc::clone(&last_send),
                Arc::default(),
            )
            .in_process(self.in_process),
        )?;
        // Health pings keep idle workers from reconnecting: the Python and .NET SDKs give up on
        // a stream after 120 s of silence, this crate's worker after 150 s.
        let mut stop = self.engine.shutdown_signal();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(HEALTH_PING_EVERY) => {}
                    _ = tx.closed() => break,
                    _ = stop.changed() => break,
                }
                let idle = now_ms() - last_send.load(Ordering::Relaxed);
                if idle >= 15_000 {
                    let ping = WorkItem {
                        request: Some(work_item::Request::HealthPing(proto::HealthPing {})),
                        completion_token: String::new(),
                    };
                    if tx.send(Ok(ping)).is_err() {
                        break;
                    }
                    last_send.store(now_ms(), Ordering::Relaxed);
                }
            }
        });
        Ok(Response::new(Box::pin(WorkItemStream {
            rx,
            engine: Arc::clone(&self.engine),
            id,
            _held: held,
        })))
    }

    async fn complete_activity_task(
        &self,
        req: Request<proto::ActivityResponse>,
    ) -> Result<Response<proto::CompleteTaskResponse>, Status> {
        self.within_limit(&req)?;
        if let Some(wait) = self.engine.complete_activity(req.into_inner())? {
            committed(wait).await?;
        }
        Ok(Response::new(proto::CompleteTaskResponse {}))
    }

    async fn complete_orchestrator_task(
        &self,
        req: Request<proto::OrchestratorResponse>,
    ) -> Result<Response<proto::CompleteTaskResponse>, Status> {
        self.within_limit(&req)?;
        if let Some(wait) = self.engine.complete_orchestration(req.into_inner())? {
            committed(wait).await?;
        }
        Ok(Response::new(proto::CompleteTaskResponse {}))
    }

    async fn complete_entity_task(
        &self,
        req: Request<proto::EntityBatchResult>,
    ) -> Result<Response<proto::CompleteTaskResponse>, Status> {
        self.within_limit(&req)?;
        if let Some(wait) = self.engine.complete_entity(req.into_inner())? {
            committed(wait).await?;
        }
        Ok(Response::new(proto::CompleteTaskResponse {}))
    }

    type StreamInstanceHistoryStream = proto::ResponseStream<proto::HistoryChunk>;

    async fn stream_instance_history(
        &self,
        req: Request<proto::StreamInstanceHistoryRequest>,
    ) -> Result<Response<Self::StreamInstanceHistoryStream>, Status> {
        let held = activity_of(&req).map(Activity::hold);
        let r = req.into_inner();
        let history = self.engine.history(&r.instance_id).await?.ok_or_else(|| {
            Status::not_found(format!(
                "no orchestration instance with id '{}'",
                r.instance_id
            ))
        })?;
        let chunks: Vec<Result<proto::HistoryChunk, Status>> = history
            .chunks(HISTORY_CHUNK)
            .map(|c| Ok(proto::HistoryChunk { events: c.to_vec() }))
            .collect();
        // The connection is not idle until the last chunk is sent.
        let chunks = tokio_stream::iter(chunks).map(move |chunk| {
            let _ = &held;
            chunk
        });
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn create_task_hub(
        &self,
        req: Request<proto::CreateTaskHubRequest>,
    ) -> Result<Response<proto::CreateTaskHubResponse>, Status> {
        // There is one implicit task hub: creating it is a no-op, recreating it empties it.
        if req.into_inner().recreate_if_exists {
            committed(self.engine.delete_task_hub()?).await?;
        }
        Ok(Response::new(proto::CreateTaskHubResponse {}))
    }

    async fn delete_task_hub(
        &self,
        _req: Request<proto::DeleteTaskHubRequest>,
    ) -> Result<Response<proto::DeleteTaskHubResponse>, Status> {
        committed(self.engine.delete_task_hub()?).await?;
        Ok(Response::new(proto::DeleteTaskHubResponse {}))
    }

    async fn signal_entity(
        &self,
        req: Request<proto::SignalEntityRequest>,
    ) -> Result<Response<proto::SignalEntityResponse>, Status> {
        self.within_limit(&req)?;
        let r = req.into_inner();
        let request_id = if r.request_id.is_empty() {
            uuid::Uuid::new_v4().simple().to_string()
        } else {
            r.request_id
        };
        let wait = self.engine.signal_entity(
            &r.instance_id,
            r.name,
            r.input,
            request_id,
            given_ms(r.scheduled_time.as_ref()),
        )?;
        committed(wait).await?;
        Ok(Response::new(proto::SignalEntityResponse {}))
    }

    async fn get_entity(
        &self,
        req: Request<proto::GetEntityRequest>,
    ) -> Result<Response<proto::GetEntityResponse>, Status> {
        let r = req.into_inner();
        let id = canonical_entity_id(&r.instance_id).map_err(Status::invalid_argument)?;
        let entity = self.engine.get_entity(&id, r.include_state).await?;
        Ok(Response::new(proto::GetEntityResponse {
            exists: entity.is_some(),
            entity,
        }))
    }

    async fn query_entities(
        &self,
        req: Request<proto::QueryEntitiesRequest>,
    ) -> Result<Response<proto::QueryEntitiesResponse>, Status> {
        let q = req.into_inner().query.unwrap_or_default();
        let page_size = q
            .page_size
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_PAGE);
        let prefix = q
            .instance_id_starts_with
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(canonical_prefix);
        let page = self.engine.query_entities(&EntityFilter {
            prefix: prefix.as_deref(),
            modified_from: given_ms(q.last_modified_from.as_ref()),
            modified_to: given_ms(q.last_modified_to.as_ref()),
            include_state: q.include_state,
            include_transient: q.include_transient,
            page_size,
            after: q.continuation_token.as_deref().filter(|t| !t.is_empty()),
        });
        Ok(Response::new(proto::QueryEntitiesResponse {
            entities: page.entities,
            continuation_token: page.continuation_token,
        }))
    }

    async fn clean_entity_storage(
        &self,
        req: Request<proto::CleanEntityStorageRequest>,
    ) -> Result<Response<proto::CleanEntityStorageResponse>, Status> {
        let r = req.into_inner();
        let ((removed, released), wait) = self
            .engine
            .clean_entity_storage(r.remove_empty_entities, r.release_orphaned_locks);
        committed(wait).await?;
        Ok(Response::new(proto::CleanEntityStorageResponse {
            continuation_token: None,
            empty_entities_removed: removed,
            orphaned_locks_released: released,
        }))
    }

    async fn abandon_task_activity_work_item(
        &self,
        req: Request<proto::AbandonActivityTaskRequest>,
    ) -> Result<Response<proto::AbandonActivityTaskResponse>, Status> {
        let token = req.into_inner().completion_token;
        self.engine.abandon(&token, WorkKind::Activity)?;
        Ok(Response::new(proto::AbandonActivityTaskResponse {}))
    }

    async fn abandon_task_orchestrator_work_item(
        &self,
        req: Request<proto::AbandonOrchestrationTaskRequest>,
    ) -> Result<Response<proto::AbandonOrchestrationTaskResponse>, Status> {
        let token = req.into_inner().completion_token;
        self.engine.abandon(&token, WorkKind::Orchestration)?;
        Ok(Response::new(proto::AbandonOrchestrationTaskResponse {}))
    }

    async fn abandon_task_entity_work_item(
        &self,
        req: Request<proto::AbandonEntityTaskRequest>,
    ) -> Result<Response<proto::AbandonEntityTaskResponse>, Status> {
        let token = req.into_inner().completion_token;
        self.engine.abandon(&token, WorkKind::Entity)?;
        Ok(Response::new(proto::AbandonEntityTaskResponse {}))
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
