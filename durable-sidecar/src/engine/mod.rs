//! The sidecar engine: the state machine of every instance, from start to purge.
//!
//! The active state lives behind one mutex (finished instances leave it once their final
//! status is durable and are read from storage on demand); every mutation is synchronous, produces one storage batch
//! (submitted while the lock is held, so batches commit in mutation order) and marks the work it
//! created with that batch's sequence number. Work is handed to a worker only once its batch is
//! durable, and RPCs answer only after their own batch committed.
//!
//! Where things live:
//!
//! | module | its one job |
//! |---|---|
//! | `state` | the in-memory state types and the bookkeeping every mutation shares |
//! | `batch` | storage batches: sequence numbers, submission in mutation order |
//! | `lifecycle` | client-driven changes: start, raise, terminate, suspend/resume, restart, rewind |
//! | `episode` | applying a worker's completion: an orchestration episode's actions, activity results |
//! | `routing` | deliveries between instances: events, terminations, sub-orchestration starts and results |
//! | `timers` | durable timers and scheduled starts |
//! | `dispatch` | worker streams, handing out durable work, tokens, abandon |
//! | `entities` | entity operation queues, batches and their results, locks of critical sections |
//! | `queries` | reads, long-poll waits, queries and listings, purge |

mod batch;
mod dispatch;
mod entities;
mod episode;
mod lifecycle;
mod messages;
mod queries;
mod routing;
mod state;
mod timers;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tonic::Status;

pub(crate) use batch::CommitWait;
pub(crate) use entities::canonical_entity_id;
pub(crate) use lifecycle::NewInstance;
pub(crate) use queries::EntityFilter;
use state::State;

use crate::partitions::Partition;
use crate::proto::{HistoryEvent, OrchestrationStatus, history_event::EventType};
use crate::storage::{CommitSignal, LoadedState, Storage, StorageError};
use crate::time::{from_ms, now_ms};
use crate::work_queue::WorkKind;

/// The longest instance id or orchestration name the sidecar accepts, in bytes.
pub(crate) const MAX_NAME_BYTES: usize = 1024;

/// INVALID_ARGUMENT for an id or name longer than [`MAX_NAME_BYTES`] (without echoing it whole).
pub(crate) fn check_length(what: &str, value: &str) -> Result<(), Status> {
    if value.len() <= MAX_NAME_BYTES {
        return Ok(());
    }
    let start: String = value.chars().take(40).collect();
    Err(Status::invalid_argument(format!(
        "{what} is {} bytes, longer than the {MAX_NAME_BYTES} bytes allowed (it starts '{start}…'); use a shorter one",
        value.len()
    )))
}

/// Whether a status is final (no more episodes unless restarted or rewound).
pub(crate) fn is_terminal(status: i32) -> bool {
    status == OrchestrationStatus::Completed as i32
        || status == OrchestrationStatus::Failed as i32
        || status == OrchestrationStatus::Terminated as i32
        || status == OrchestrationStatus::Canceled as i32
}

/// The protocol name of a status (`ORCHESTRATION_STATUS_COMPLETED`), for messages.
pub(crate) fn status_name(status: i32) -> &'static str {
    OrchestrationStatus::try_from(status)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN")
}

/// A history event stamped now.
fn event(event_id: i32, ty: EventType) -> HistoryEvent {
    HistoryEvent {
        event_id,
        timestamp: Some(from_ms(now_ms())),
        event_type: Some(ty),
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!(
        "no orchestration instance with id '{id}'; check the id (it may have been purged)"
    ))
}

/// The refusal of a call that needs a live instance: FAILED_PRECONDITION naming its status.
fn finished(id: &str, status: i32, what: &str) -> Status {
    Status::failed_precondition(format!(
        "orchestration instance '{id}' already finished ({}) and {what}",
        status_name(status)
    ))
}

/// The engine: state, storage, and the signals its background tasks wait on.
pub(crate) struct Engine {
    state: Mutex<State>,
    storage: Arc<dyn Storage>,
    signal: Arc<CommitSignal>,
    timer_wake: tokio::sync::Notify,
    shutdown: watch::Sender<bool>,
}

impl Engine {
    /// An engine over what `storage` loaded, serving every instance or (with `partition`)
    /// one partition's; call [`Engine::spawn_tasks`] once serving.
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        signal: Arc<CommitSignal>,
        loaded: LoadedState,
        partition: Option<Partition>,
    ) -> Result<Arc<Self>, StorageError> {
        let mut st = State::restore(loaded)?;
        st.metrics = Arc::clone(&signal.metrics);
        if let Some(p) = partition {
            // Activity and timer keys are unique across the partitions sharing the tables:
            // each partition counts from its own base (above the keys of an unpartitioned
            // database, which start at 1).
            st.next_key = st.next_key.max((u64::from(p.index) + 1) << 48 | 1);
        }
        st.partition = partition;
        let (shutdown, _) = watch::channel(false);
        Ok(Arc::new(Self {
            state: Mutex::new(st),
            storage,
            signal,
            timer_wake: tokio::sync::Notify::new(),
            shutdown,
        }))
    }

    /// The sidecar's metrics in the Prometheus text format.
    pub(crate) fn metrics_text(&self) -> String {
        self.signal.metrics.render(self.metrics_snapshot())
    }

    /// What the engine holds now, for the metrics.
    pub(crate) fn metrics_snapshot(&self) -> crate::metrics::Snapshot {
        {
            let st = self.lock();
            let mut by_status: BTreeMap<&'static str, i64> = BTreeMap::new();
            for inst in st.instances.values().filter(|i| !is_terminal(i.rec.status)) {
                *by_status.entry(status_name(inst.rec.status)).or_default() += 1;
            }
            let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            crate::metrics::Snapshot {
                instances: by_status.into_iter().collect(),
                queued: [
                    (WorkKind::Orchestration, count(st.ready.len())),
                    (WorkKind::Activity, count(st.activity_queue.len())),
                    (WorkKind::Entity, count(st.entity_ready.len())),
                ],
                workers: count(st.streams.len()),
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("sidecar engine lock poisoned")
    }

    /// Starts the background tasks (timers, dispatch after commits).
    pub(crate) fn spawn_tasks(self: &Arc<Self>) {
        let me = Arc::clone(self);
        let mut stop = self.shutdown.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = me.signal.committed.notified() => {
                        let mut st = me.lock();
                        if let Some(status) = me.signal.failure_status() {
                            me.enter_failed(&mut st, status);
                        } else {
                            me.pump(&mut st);
                        }
                    }
                    _ = stop.changed() => break,
                }
            }
        });
        self.spawn_timer_loop();
    }

    /// Commit progress and the storage failure, if any.
    pub(crate) fn storage_signal(&self) -> &CommitSignal {
        &self.signal
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stops dispatching, closes every work-item stream and wakes all waiters.
    pub(crate) fn begin_shutdown(&self) {
        let mut st = self.lock();
        st.closing = true;
        st.streams.clear();
        st.waiters.clear();
        drop(st);
        let _ = self.shutdown.send(true);
    }

    /// Stops a partition's engine (its replica hands it back): the slots its work in flight
    /// holds on worker streams (shared with the replica's other partitions) are freed, then it
    /// shuts down. The work runs again wherever the partition is served next.
    pub(crate) fn stop_serving(&self) {
        let mut st = self.lock();
        let tokens: Vec<String> = st.tokens.keys().cloned().collect();
        for token in tokens {
            st.release_token(&token);
        }
        self.count_early_answers(&mut st);
        drop(st);
        self.begin_shutdown();
    }

    /// Whether this engine serves instance or entity `id` (always, unless partitioned).
    pub(crate) fn serves(&self, id: &str) -> bool {
        self.lock().is_local(id)
    }

    /// A commit failed: memory is ahead of the database, so nothing more is dispatched or
    /// answered. Work-item streams end with the storage error; waiters wake and see it. A
    /// partition's engine leaves the streams (its replica's other partitions still use them)
    /// and is handed back by its replica.
    fn enter_failed(&self, st: &mut State, status: Status) {
        if st.closing {
            return;
        }
        if st.partition.is_some() {
            let tokens: Vec<String> = st.tokens.keys().cloned().collect();
            for token in tokens {
                st.release_token(&token);
            }
            st.closing = true;
            st.streams.clear();
            st.waiters.clear();
            return;
        }
        st.closing = true;
        for (_, s) in std::mem::take(&mut st.streams) {
            let _ = s.tx.send(Err(status.clone()));
        }
        st.waiters.clear();
    }

    /// UNAVAILABLE once storage failed or shutdown began.
    fn refuse(&self, st: &State) -> Result<(), Status> {
        if let Some(status) = self.signal.failure_status() {
            return Err(status);
        }
        if st.closing {
            return Err(Status::unavailable("the sidecar is shutting down"));
        }
        Ok(())
    }

    /// The prefix of every completion token this engine hands out (`{prefix}-{n}`).
    pub(crate) fn token_prefix(&self) -> String {
        self.lock().token_prefix().to_owned()
    }

    pub(crate) fn close_storage(&self) {
        self.storage.close();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;

    use tokio::sync::{mpsc, oneshot};

    use super::*;
    use crate::proto::{
        self, OrchestrationState, OrchestratorAction, orchestrator_action::OrchestratorActionType,
    };
    use crate::storage::memory::MemoryStorage;
    use crate::storage::{CompletedQuery, InstanceQuery, InstanceRecord, WriteOp};
    use crate::work_queue::{Filters, WorkStream};

    type Done = oneshot::Sender<Result<(), Arc<StorageError>>>;

    /// A storage whose batches become durable only when the test releases them.
    struct HeldStorage {
        signal: Arc<CommitSignal>,
        held: Mutex<Vec<(u64, Vec<WriteOp>, Done)>>,
        /// What has been released, readable like committed storage.
        committed: MemoryStorage,
    }

    impl Storage for HeldStorage {
        fn load(&self) -> Result<LoadedState, StorageError> {
            Ok(LoadedState::default())
        }
        fn submit(&self, seq: u64, batch: Vec<WriteOp>, done: Option<Done>) {
            if let Some(done) = done {
                self.held.lock().unwrap().push((seq, batch, done));
            }
        }
        fn close(&self) {}
        fn read_instance(&self, id: &str) -> Result<Option<InstanceRecord>, StorageError> {
            self.committed.read_instance(id)
        }
        fn read_history(&self, id: &str) -> Result<Vec<HistoryEvent>, StorageError> {
            self.committed.read_history(id)
        }
        fn query_instances(&self, q: &InstanceQuery) -> Result<Vec<InstanceRecord>, StorageError> {
            self.committed.query_instances(q)
        }
        fn completed_instances(
            &self,
            q: &CompletedQuery,
        ) -> Result<Vec<(i64, String)>, StorageError> {
            self.committed.completed_instances(q)
        }
    }

    impl HeldStorage {
        fn release(&self) {
            for (seq, batch, done) in std::mem::take(&mut *self.held.lock().unwrap()) {
                self.committed.submit(seq, batch, None);
                self.signal.durable_seq.fetch_max(seq, Ordering::SeqCst);
                let _ = done.send(Ok(()));
            }
            self.signal.committed.notify_one();
        }
    }

    fn held_engine() -> (Arc<Engine>, Arc<HeldStorage>) {
        let signal = Arc::new(CommitSignal::default());
        let storage = Arc::new(HeldStorage {
            signal: Arc::clone(&signal),
            held: Mutex::new(Vec::new()),
            committed: MemoryStorage::new(Arc::new(CommitSignal::default())),
        });
        let engine = Engine::new(
            Arc::clone(&storage) as Arc<dyn Storage>,
            signal,
            LoadedState::default(),
            None,
        )
        .unwrap();
        engine.spawn_tasks();
        (engine, storage)
    }

    fn new_instance(id: &str) -> NewInstance {
        NewInstance {
            instance_id: id.into(),
            name: "O".into(),
            version: None,
            input: None,
            execution_id: None,
            scheduled_start_ms: None,
            tags: HashMap::new(),
            parent: None,
            parent_trace_context: None,
        }
    }

    /// Completes the episode under `token` of instance `id` with output `1`.
    fn complete(engine: &Engine, id: &str, token: String) -> CommitWait {
        let done = OrchestratorAction {
            id: 1,
            orchestrator_action_type: Some(OrchestratorActionType::CompleteOrchestration(
                proto::CompleteOrchestrationAction {
                    orchestration_status: OrchestrationStatus::Completed as i32,
                    result: Some("1".into()),
                    ..Default::default()
                },
            )),
        };
        engine
            .complete_orchestration(proto::OrchestratorResponse {
                instance_id: id.into(),
                actions: vec![done],
                completion_token: token,
                ..Default::default()
            })
            .unwrap()
            .unwrap()
    }

    async fn wait_briefly(
        engine: &Engine,
        id: &str,
        done: fn(i32) -> bool,
    ) -> Option<Result<Option<OrchestrationState>, Status>> {
        tokio::time::timeout(
            Duration::from_millis(150),
            engine.wait_for(id, false, None, done),
        )
        .await
        .ok()
    }

    #[tokio::test]
    async fn waits_answer_only_once_the_change_is_durable() {
        let (engine, storage) = held_engine();
        let (tx, mut rx) = mpsc::unbounded_channel();
        engine
            .add_stream(WorkStream::new(
                tx,
                Filters::default(),
                &proto::GetWorkItemsRequest::default(),
                Arc::new(AtomicI64::new(0)),
                Arc::default(),
            ))
            .unwrap();
        let _commit = engine.start_instance(new_instance("a"), &[], None).unwrap();
        assert!(
            wait_briefly(&engine, "a", |_| true).await.is_none(),
            "an uncommitted start is not visible"
        );
        storage.release();
        let state = wait_briefly(&engine, "a", |_| true).await.unwrap().unwrap();
        assert_eq!(
            state.unwrap().orchestration_status,
            OrchestrationStatus::Pending as i32
        );
        let item = rx.recv().await.unwrap().unwrap();
        let _commit = complete(&engine, "a", item.completion_token);
        let waiter = {
            let engine = Arc::clone(&engine);
            tokio::spawn(async move { engine.wait_for("a", false, None, is_terminal).await })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            !waiter.is_finished(),
            "completion must not be reported before it is durable"
        );
        storage.release();
        let state = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            state.orchestration_status,
            OrchestrationStatus::Completed as i32
        );
        assert!(
            !engine.lock().instances.contains_key("a"),
            "a finished instance leaves memory once its final status is durable"
        );
        let again = wait_briefly(&engine, "a", |_| true).await.unwrap().unwrap();
        assert_eq!(
            again.unwrap().orchestration_status,
            OrchestrationStatus::Completed as i32,
            "and is read back from storage"
        );
        let history = engine.history("a").await.unwrap().unwrap();
        assert!(!history.is_empty());
        engine.begin_shutdown();
    }

    #[tokio::test]
    async fn an_episode_is_dispatched_early_but_commits_after_what_made_it_ready() {
        let (engine, storage) = held_engine();
        let (tx, mut rx) = mpsc::unbounded_channel();
        engine
            .add_stream(
                WorkStream::new(
                    tx,
                    Filters::default(),
                    &proto::GetWorkItemsRequest::default(),
                    Arc::new(AtomicI64::new(0)),
                    Arc::default(),
                )
                .in_process(true),
            )
            .unwrap();
        let (_, start) = engine.start_instance(new_instance("e"), &[], None).unwrap();
        let item = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the first episode goes out before its start is durable")
            .unwrap()
            .unwrap();
        assert_eq!(engine.signal.early_dispatched.load(Ordering::SeqCst), 1);
        let mut episode = complete(&engine, "e", item.completion_token);
        assert_eq!(
            engine.signal.early_answered.load(Ordering::SeqCst),
            1,
            "the answer is counted for the writer"
        );
        assert!(
            wait_briefly(&engine, "e", is_terminal).await.is_none(),
            "nothing of it is visible before it is durable"
        );
        assert!(episode.try_recv().is_err(), "nor acknowledged");
        let held = storage.held.lock().unwrap().len();
        assert_eq!(held, 2, "the start, then the episode, in that order");
        storage.release();
        start.await.unwrap().unwrap();
        episode.await.unwrap().unwrap();
        let state = wait_briefly(&engine, "e", is_terminal)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            state.unwrap().orchestration_status,
            OrchestrationStatus::Completed as i32
        );
        engine.begin_shutdown();
    }

    #[tokio::test]
    async fn an_in_process_worker_gets_only_the_history_it_does_not_hold() {
        let (engine, storage) = held_engine();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stream = WorkStream::new(
            tx,
            Filters::default(),
            &proto::GetWorkItemsRequest::default(),
            Arc::new(AtomicI64::new(0)),
            Arc::default(),
        );
        engine.add_stream(stream.in_process(true)).unwrap();
        let mut next = async || {
            let item = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("an episode goes out")
                .unwrap()
                .unwrap();
            let Some(proto::work_item::Request::OrchestratorRequest(request)) = item.request else {
                panic!("an orchestration work item");
            };
            (request, item.completion_token)
        };
        let answer = |token: String, requires_history: bool| {
            engine
                .complete_orchestration(proto::OrchestratorResponse {
                    instance_id: "h".into(),
                    completion_token: token,
                    requires_history,
                    ..Default::default()
                })
                .unwrap()
        };
        let (_, start) = engine.start_instance(new_instance("h"), &[], None).unwrap();
        let (first, token) = next().await;
        assert_eq!(
            first.held_events(),
            None,
            "the first episode has the whole history"
        );
        assert_eq!(
            first.new_events.len(),
            2,
            "OrchestratorStarted, ExecutionStarted"
        );
        answer(token, false);

        engine.raise_event("h", "go".into(), None).unwrap();
        let (second, token) = next().await;
        assert_eq!(
            second.held_events(),
            Some(2),
            "the worker holds what it applied"
        );
        assert!(second.past_events.is_empty(), "and gets none of it again");
        assert_eq!(
            second.new_events.len(),
            2,
            "OrchestratorStarted, EventRaised"
        );
        assert!(
            answer(token, true).is_none(),
            "a worker that lost it commits nothing"
        );

        let (again, token) = next().await;
        assert_eq!(
            again.held_events(),
            None,
            "it gets the episode again, whole"
        );
        assert_eq!(again.past_events.len(), 2);
        assert_eq!(again.new_events[1..], second.new_events[1..]);
        let done = complete(&engine, "h", token);
        storage.release();
        done.await.unwrap().unwrap();
        start.await.unwrap().unwrap();
        engine.begin_shutdown();
    }

    #[tokio::test]
    async fn abandoned_waits_leave_nothing_behind() {
        let (engine, storage) = held_engine();
        let (_, commit) = engine.start_instance(new_instance("w"), &[], None).unwrap();
        storage.release();
        commit.await.unwrap().unwrap();
        for _ in 0..20 {
            assert!(wait_briefly(&engine, "w", is_terminal).await.is_none());
        }
        assert!(
            engine.lock().waiters.get("w").is_none_or(Vec::is_empty),
            "a wait that timed out on the client's side keeps no waiter"
        );
        engine.begin_shutdown();
    }
}
