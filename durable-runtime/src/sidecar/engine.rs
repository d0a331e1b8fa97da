//! The instance state machine: applying episode results, routing events between instances,
//! timers, and handing work to connected workers.
//!
//! All state lives behind one mutex; every mutation is synchronous, produces one storage batch
//! (submitted while the lock is held, so batches commit in mutation order) and marks the work it
//! created with that batch's sequence number. Work is handed to a worker only once its batch is
//! durable, and RPCs answer only after their own batch committed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::Status;

use super::storage::{
    ActivityRecord, CommitSignal, InstanceRecord, LoadedState, Storage, StorageError, TimerRecord,
    WriteOp,
};
use super::time::{from_ms, now_ms, to_ms};
use super::work_queue::{Filters, WorkStream};
use crate::proto::{
    self, HistoryEvent, OrchestrationInstance, OrchestrationState, OrchestrationStatus,
    OrchestratorAction, OrchestratorRequest, ParentInstanceInfo, TaskFailureDetails, WorkItem,
    history_event::EventType, orchestrator_action::OrchestratorActionType, work_item,
};

pub(crate) type CommitWait = oneshot::Receiver<Result<(), Arc<StorageError>>>;

/// Whether a status is final (no more episodes unless restarted or rewound).
pub(crate) fn is_terminal(status: i32) -> bool {
    status == OrchestrationStatus::Completed as i32
        || status == OrchestrationStatus::Failed as i32
        || status == OrchestrationStatus::Terminated as i32
        || status == OrchestrationStatus::Canceled as i32
}

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

pub(crate) struct Instance {
    rec: InstanceRecord,
    history: Vec<HistoryEvent>,
    inbox: VecDeque<(u64, HistoryEvent)>,
    next_inbox_seq: u64,
    in_flight: Option<InFlight>,
    /// Actions of `isPartial` chunks, accumulated until the final chunk.
    partial: Vec<OrchestratorAction>,
    queued: bool,
    /// Batch that must be durable before this instance may be dispatched.
    ready_seq: u64,
    /// Batch of the last status change: waits and reads answer only once it is durable.
    status_seq: u64,
}

struct InFlight {
    token: String,
    up_to_seq: Option<u64>,
    new_events: Vec<HistoryEvent>,
}

struct Activity {
    request: proto::ActivityRequest,
    dispatched: Option<String>,
    ready_seq: u64,
}

enum TimerEntry {
    Fire(Box<TimerRecord>),
    Start(String),
}

#[derive(Clone)]
enum Dispatched {
    Orchestration { instance_id: String, stream: u64 },
    Activity { key: u64, stream: u64 },
}

/// Events or commands for other instances, applied after the current instance is updated.
enum Outbound {
    Event(String, Box<HistoryEvent>),
    Terminate {
        target: String,
        output: Option<String>,
        recurse: bool,
    },
    CreateChild(Box<NewInstance>, String),
    NotifyParent(String),
}

pub(crate) struct NewInstance {
    pub(crate) instance_id: String,
    pub(crate) name: String,
    pub(crate) version: Option<String>,
    pub(crate) input: Option<String>,
    pub(crate) execution_id: Option<String>,
    pub(crate) scheduled_start_ms: Option<i64>,
    pub(crate) tags: HashMap<String, String>,
    pub(crate) parent: Option<ParentInstanceInfo>,
    pub(crate) parent_trace_context: Option<proto::TraceContext>,
}

/// A batch under construction plus the sequence number it will commit under.
struct Batch {
    seq: u64,
    ops: Vec<WriteOp>,
}

pub(crate) struct State {
    instances: HashMap<String, Instance>,
    ready: VecDeque<String>,
    activities: HashMap<u64, Activity>,
    activity_queue: VecDeque<u64>,
    timers: BTreeMap<(i64, u64), TimerEntry>,
    tokens: HashMap<String, Dispatched>,
    /// Ordered by id so round-robin needs no allocation or sort.
    streams: BTreeMap<u64, WorkStream>,
    waiters: HashMap<String, Vec<oneshot::Sender<()>>>,
    /// (batch seq, instance id): waiters to wake once that batch is durable, in seq order.
    wake_after: VecDeque<(u64, String)>,
    /// Instances purged by a batch that may not be durable yet: id → batch seq.
    purging: HashMap<String, u64>,
    next_seq: u64,
    next_key: u64,
    next_stream: u64,
    next_token: u64,
    token_prefix: String,
    /// Round-robin cursor: the stream id to try first.
    rr: u64,
    closing: bool,
}

pub(crate) struct Engine {
    state: Mutex<State>,
    storage: Arc<dyn Storage>,
    signal: Arc<CommitSignal>,
    timer_wake: tokio::sync::Notify,
    shutdown: watch::Sender<bool>,
}

impl Engine {
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        signal: Arc<CommitSignal>,
        loaded: LoadedState,
    ) -> Result<Arc<Self>, StorageError> {
        let mut st = State {
            instances: HashMap::new(),
            ready: VecDeque::new(),
            activities: HashMap::new(),
            activity_queue: VecDeque::new(),
            timers: BTreeMap::new(),
            tokens: HashMap::new(),
            streams: BTreeMap::new(),
            waiters: HashMap::new(),
            wake_after: VecDeque::new(),
            purging: HashMap::new(),
            next_seq: 1,
            next_key: 1,
            next_stream: 1,
            next_token: 1,
            token_prefix: new_id()[..8].to_string(),
            rr: 0,
            closing: false,
        };
        let mut history = loaded.history;
        let mut inbox = loaded.inbox;
        let now = now_ms();
        for rec in loaded.instances {
            let id = rec.instance_id.clone();
            let hist = history
                .remove(&id)
                .unwrap_or_default()
                .iter()
                .map(|b| HistoryEvent::decode(b.as_slice()))
                .collect::<Result<Vec<_>, _>>()?;
            let mut ib = VecDeque::new();
            let mut next_inbox_seq = 1;
            for (seq, b) in inbox.remove(&id).unwrap_or_default() {
                ib.push_back((seq, HistoryEvent::decode(b.as_slice())?));
                next_inbox_seq = next_inbox_seq.max(seq + 1);
            }
            if let Some(start) = rec.scheduled_start_ms.filter(|s| *s > now) {
                if !is_terminal(rec.status) {
                    let key = st.next_key;
                    st.next_key += 1;
                    st.timers
                        .insert((start, key), TimerEntry::Start(id.clone()));
                }
            }
            st.instances.insert(
                id.clone(),
                Instance {
                    rec,
                    history: hist,
                    inbox: ib,
                    next_inbox_seq,
                    in_flight: None,
                    partial: Vec::new(),
                    queued: true,
                    ready_seq: 0,
                    status_seq: 0,
                },
            );
            st.ready.push_back(id);
        }
        for a in loaded.activities {
            st.next_key = st.next_key.max(a.key + 1);
            if let Some(request) = a.request {
                st.activities.insert(
                    a.key,
                    Activity {
                        request,
                        dispatched: None,
                        ready_seq: 0,
                    },
                );
                st.activity_queue.push_back(a.key);
            }
        }
        for t in loaded.timers {
            st.next_key = st.next_key.max(t.key + 1);
            st.timers
                .insert((t.fire_at_ms, t.key), TimerEntry::Fire(Box::new(t)));
        }
        let (shutdown, _) = watch::channel(false);
        Ok(Arc::new(Self {
            state: Mutex::new(st),
            storage,
            signal,
            timer_wake: tokio::sync::Notify::new(),
            shutdown,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("sidecar engine lock poisoned")
    }

    fn begin(&self, st: &mut State) -> Batch {
        let seq = st.next_seq;
        st.next_seq += 1;
        Batch {
            seq,
            ops: Vec::new(),
        }
    }

    /// Submits the batch (while the state lock is still held, to keep commit order) and returns
    /// a future-like receiver for its durability.
    fn submit(&self, st: &mut State, batch: Batch) -> CommitWait {
        let (tx, rx) = oneshot::channel();
        self.storage.submit(batch.seq, batch.ops, Some(tx));
        self.pump(st);
        rx
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
        let me = Arc::clone(self);
        let mut stop = self.shutdown.subscribe();
        tokio::spawn(async move {
            loop {
                let next = me.fire_due_timers();
                let sleep = match next {
                    Some(at) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)),
                    None => Duration::from_secs(3600),
                };
                tokio::select! {
                    _ = tokio::time::sleep(sleep) => {}
                    _ = me.timer_wake.notified() => {}
                    _ = stop.changed() => break,
                }
            }
        });
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

    /// A commit failed: memory is ahead of the database, so nothing more is dispatched or
    /// answered. Work-item streams end with the storage error; waiters wake and see it.
    fn enter_failed(&self, st: &mut State, status: Status) {
        if st.closing {
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

    pub(crate) fn close_storage(&self) {
        self.storage.close();
    }

    // ------------------------------------------------------------------------------------
    // Instance bookkeeping
    // ------------------------------------------------------------------------------------

    fn push_inbox(st: &mut State, b: &mut Batch, id: &str, ev: HistoryEvent) {
        let Some(inst) = st.instances.get_mut(id) else {
            return;
        };
        let seq = inst.next_inbox_seq;
        inst.next_inbox_seq += 1;
        b.ops.push(WriteOp::PutInbox {
            instance_id: id.to_string(),
            seq,
            event: ev.encode_to_vec(),
        });
        inst.inbox.push_back((seq, ev));
        inst.rec.updated_ms = now_ms();
        Self::mark_ready(st, b, id);
    }

    fn mark_ready(st: &mut State, b: &Batch, id: &str) {
        if let Some(inst) = st.instances.get_mut(id) {
            inst.ready_seq = inst.ready_seq.max(b.seq);
            if !inst.queued {
                inst.queued = true;
                st.ready.push_back(id.to_string());
            }
        }
    }

    fn put_instance(b: &mut Batch, inst: &Instance) {
        b.ops.push(WriteOp::PutInstance(Box::new(inst.rec.clone())));
    }

    /// Records that the instance's status changed in batch `b`; its waiters wake once `b` is
    /// durable (never earlier: nothing is acknowledged before it is committed).
    fn notify_waiters(st: &mut State, b: &Batch, id: &str) {
        if let Some(inst) = st.instances.get_mut(id) {
            inst.status_seq = inst.status_seq.max(b.seq);
        }
        st.wake_after.push_back((b.seq, id.to_string()));
    }

    /// Wakes the waiters of every status change that is now durable.
    fn wake_durable(&self, st: &mut State) {
        let durable = self.signal.durable_seq.load(Ordering::SeqCst);
        while st
            .wake_after
            .front()
            .is_some_and(|(seq, _)| *seq <= durable)
        {
            let Some((seq, id)) = st.wake_after.pop_front() else {
                break;
            };
            if st.purging.get(&id).is_some_and(|s| *s <= seq) {
                st.purging.remove(&id);
            }
            if let Some(ws) = st.waiters.remove(&id) {
                for w in ws {
                    let _ = w.send(());
                }
            }
        }
    }

    fn create_instance(&self, st: &mut State, b: &mut Batch, ni: NewInstance) {
        let now = now_ms();
        let execution_id = ni.execution_id.clone().unwrap_or_else(new_id);
        let started = EventType::ExecutionStarted(proto::ExecutionStartedEvent {
            name: ni.name.clone(),
            version: ni.version.clone(),
            input: ni.input.clone(),
            orchestration_instance: Some(OrchestrationInstance {
                instance_id: ni.instance_id.clone(),
                execution_id: Some(execution_id.clone()),
            }),
            parent_instance: ni.parent.clone(),
            scheduled_start_timestamp: ni.scheduled_start_ms.map(from_ms),
            parent_trace_context: ni.parent_trace_context.clone(),
            orchestration_span_id: None,
            tags: ni.tags.clone(),
        });
        let rec = InstanceRecord {
            instance_id: ni.instance_id.clone(),
            name: ni.name,
            version: ni.version,
            input: ni.input,
            output: None,
            custom_status: None,
            failure_details: None,
            status: OrchestrationStatus::Pending as i32,
            execution_id,
            created_ms: now,
            updated_ms: now,
            completed_ms: None,
            scheduled_start_ms: ni.scheduled_start_ms,
            parent: ni.parent,
            tags: ni.tags,
            children: Vec::new(),
            force_dispatch: false,
        };
        let mut queued = false;
        if let Some(old) = st.instances.get_mut(&ni.instance_id) {
            // Replacing an instance (reuse policy): its episode in flight, queued activities
            // and timers die with it; a late completion for it is ignored.
            let token = old.in_flight.take().map(|f| f.token);
            queued = old.queued;
            if let Some(token) = token {
                Self::release_token(st, &token);
            }
            Self::drop_pending_work(st, b, &ni.instance_id);
            b.ops.push(WriteOp::DeleteInstance(ni.instance_id.clone()));
        }
        let inst = Instance {
            rec,
            history: Vec::new(),
            inbox: VecDeque::new(),
            next_inbox_seq: 1,
            in_flight: None,
            partial: Vec::new(),
            queued,
            ready_seq: b.seq,
            status_seq: b.seq,
        };
        Self::put_instance(b, &inst);
        st.instances.insert(ni.instance_id.clone(), inst);
        Self::push_inbox(st, b, &ni.instance_id, event(-1, started));
        if let Some(start) = ni.scheduled_start_ms.filter(|s| *s > now) {
            let key = st.next_key;
            st.next_key += 1;
            st.timers
                .insert((start, key), TimerEntry::Start(ni.instance_id.clone()));
            self.timer_wake.notify_one();
        }
        Self::notify_waiters(st, b, &ni.instance_id);
    }

    /// Drops an instance's activities and timers (it is ending, replaced or purged), so no
    /// queued activity runs for it any more. Results of activities already running are ignored.
    fn drop_pending_work(st: &mut State, b: &mut Batch, id: &str) {
        let keys: Vec<u64> = st
            .activities
            .iter()
            .filter(|(_, a)| {
                a.request
                    .orchestration_instance
                    .as_ref()
                    .is_some_and(|i| i.instance_id == id)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            st.activities.remove(&key);
            b.ops.push(WriteOp::DeleteActivity(key));
        }
        st.timers.retain(|_, t| match t {
            TimerEntry::Fire(rec) if rec.instance_id == id => {
                b.ops.push(WriteOp::DeleteTimer(rec.key));
                false
            }
            TimerEntry::Start(i) => i != id,
            TimerEntry::Fire(_) => true,
        });
    }

    /// Applies cross-instance deliveries until none are left.
    fn run_outbound(&self, st: &mut State, b: &mut Batch, out: Vec<Outbound>) {
        let mut out = VecDeque::from(out);
        while let Some(o) = out.pop_front() {
            match o {
                Outbound::Event(target, ev) => {
                    let live = st
                        .instances
                        .get(&target)
                        .is_some_and(|i| !is_terminal(i.rec.status));
                    if live {
                        Self::push_inbox(st, b, &target, *ev);
                    }
                }
                Outbound::Terminate {
                    target,
                    output,
                    recurse,
                } => {
                    let Some(inst) = st.instances.get(&target) else {
                        continue;
                    };
                    if is_terminal(inst.rec.status) {
                        continue;
                    }
                    let children = inst.rec.children.clone();
                    let ev = event(
                        -1,
                        EventType::ExecutionTerminated(proto::ExecutionTerminatedEvent {
                            input: output.clone(),
                            recurse,
                        }),
                    );
                    Self::push_inbox(st, b, &target, ev);
                    // Nothing it queued may start once termination was requested.
                    Self::drop_pending_work(st, b, &target);
                    if recurse {
                        for c in children {
                            out.push_back(Outbound::Terminate {
                                target: c,
                                output: output.clone(),
                                recurse,
                            });
                        }
                    }
                }
                Outbound::CreateChild(ni, parent_id) => {
                    let running = st
                        .instances
                        .get(&ni.instance_id)
                        .is_some_and(|i| !is_terminal(i.rec.status));
                    if running {
                        let task_id = ni.parent.as_ref().map_or(-1, |p| p.task_scheduled_id);
                        let ev = event(
                            -1,
                            EventType::SubOrchestrationInstanceFailed(
                                proto::SubOrchestrationInstanceFailedEvent {
                                    task_scheduled_id: task_id,
                                    failure_details: Some(TaskFailureDetails {
                                        error_type: "OrchestrationAlreadyExistsError".into(),
                                        error_message: format!(
                                            "an orchestration with instance id '{}' is already running",
                                            ni.instance_id
                                        ),
                                        ..Default::default()
                                    }),
                                },
                            ),
                        );
                        out.push_back(Outbound::Event(parent_id, Box::new(ev)));
                        continue;
                    }
                    let child = ni.instance_id.clone();
                    self.create_instance(st, b, *ni);
                    if let Some(p) = st.instances.get_mut(&parent_id) {
                        if !p.rec.children.contains(&child) {
                            p.rec.children.push(child);
                            let rec = p.rec.clone();
                            b.ops.push(WriteOp::PutInstance(Box::new(rec)));
                        }
                    }
                }
                Outbound::NotifyParent(child_id) => {
                    let Some(child) = st.instances.get(&child_id) else {
                        continue;
                    };
                    let Some(parent) = child.rec.parent.clone() else {
                        continue;
                    };
                    let parent_id = parent
                        .orchestration_instance
                        .map(|i| i.instance_id)
                        .unwrap_or_default();
                    let ev = if child.rec.status == OrchestrationStatus::Completed as i32 {
                        EventType::SubOrchestrationInstanceCompleted(
                            proto::SubOrchestrationInstanceCompletedEvent {
                                task_scheduled_id: parent.task_scheduled_id,
                                result: child.rec.output.clone(),
                            },
                        )
                    } else {
                        let failure = child.rec.failure_details.clone().unwrap_or_else(|| {
                            TaskFailureDetails {
                                error_type: "TaskTerminated".into(),
                                error_message: format!(
                                    "sub-orchestration '{child_id}' was terminated"
                                ),
                                ..Default::default()
                            }
                        });
                        EventType::SubOrchestrationInstanceFailed(
                            proto::SubOrchestrationInstanceFailedEvent {
                                task_scheduled_id: parent.task_scheduled_id,
                                failure_details: Some(failure),
                            },
                        )
                    };
                    out.push_back(Outbound::Event(parent_id, Box::new(event(-1, ev))));
                }
            }
        }
    }

    // ------------------------------------------------------------------------------------
    // Client operations
    // ------------------------------------------------------------------------------------

    pub(crate) fn start_instance(
        &self,
        ni: NewInstance,
        replaceable: &[i32],
    ) -> Result<(String, CommitWait), Status> {
        let mut st = self.lock();
        self.refuse(&st)?;
        self.refuse(&st)?;
        if let Some(existing) = st.instances.get(&ni.instance_id) {
            if !replaceable.contains(&existing.rec.status) {
                return Err(Status::already_exists(format!(
                    "an orchestration instance with id '{}' already exists (status {}); use a different id, purge it first, or pass an orchestrationIdReusePolicy",
                    ni.instance_id,
                    status_name(existing.rec.status)
                )));
            }
        }
        let mut b = self.begin(&mut st);
        let id = ni.instance_id.clone();
        self.create_instance(&mut st, &mut b, ni);
        Ok((id, self.submit(&mut st, b)))
    }

    pub(crate) fn raise_event(
        &self,
        id: &str,
        name: String,
        input: Option<String>,
    ) -> Result<CommitWait, Status> {
        let mut st = self.lock();
        self.refuse(&st)?;
        let terminal = is_terminal(
            st.instances
                .get(id)
                .ok_or_else(|| not_found(id))?
                .rec
                .status,
        );
        let mut b = self.begin(&mut st);
        if !terminal {
            let ev = event(
                -1,
                EventType::EventRaised(proto::EventRaisedEvent { name, input }),
            );
            Self::push_inbox(&mut st, &mut b, id, ev);
        }
        Ok(self.submit(&mut st, b))
    }

    pub(crate) fn terminate(
        &self,
        id: &str,
        output: Option<String>,
        recurse: bool,
    ) -> Result<CommitWait, Status> {
        let mut st = self.lock();
        self.refuse(&st)?;
        if !st.instances.contains_key(id) {
            return Err(not_found(id));
        }
        let mut b = self.begin(&mut st);
        self.run_outbound(
            &mut st,
            &mut b,
            vec![Outbound::Terminate {
                target: id.to_string(),
                output,
                recurse,
            }],
        );
        Ok(self.submit(&mut st, b))
    }

    pub(crate) fn suspend_resume(
        &self,
        id: &str,
        reason: Option<String>,
        suspend: bool,
    ) -> Result<CommitWait, Status> {
        let mut st = self.lock();
        self.refuse(&st)?;
        if !st.instances.contains_key(id) {
            return Err(not_found(id));
        }
        let mut b = self.begin(&mut st);
        let Some(inst) = st.instances.get_mut(id) else {
            return Err(not_found(id));
        };
        let status = inst.rec.status;
        let suspended = status == OrchestrationStatus::Suspended as i32;
        if is_terminal(status) {
            return Err(Status::failed_precondition(format!(
                "orchestration instance '{id}' is {} and can no longer be {}",
                status_name(status),
                if suspend { "suspended" } else { "resumed" }
            )));
        }
        if suspend == suspended {
            return Ok(self.submit(&mut st, b));
        }
        let ev = if suspend {
            inst.rec.status = OrchestrationStatus::Suspended as i32;
            EventType::ExecutionSuspended(proto::ExecutionSuspendedEvent { input: reason })
        } else {
            inst.rec.status = if inst.history.is_empty() {
                OrchestrationStatus::Pending as i32
            } else {
                OrchestrationStatus::Running as i32
            };
            EventType::ExecutionResumed(proto::ExecutionResumedEvent { input: reason })
        };
        Self::put_instance(&mut b, inst);
        Self::push_inbox(&mut st, &mut b, id, event(-1, ev));
        Self::notify_waiters(&mut st, &b, id);
        Ok(self.submit(&mut st, b))
    }

    pub(crate) fn restart(
        &self,
        id: &str,
        new_instance_id: bool,
    ) -> Result<(String, CommitWait), Status> {
        let mut st = self.lock();
        self.refuse(&st)?;
        let inst = st.instances.get(id).ok_or_else(|| not_found(id))?;
        if !is_terminal(inst.rec.status) {
            return Err(Status::failed_precondition(format!(
                "orchestration instance '{id}' is {}; only completed, failed or terminated instances can be restarted",
                status_name(inst.rec.status)
            )));
        }
        let ni = NewInstance {
            instance_id: if new_instance_id {
                new_id()
            } else {
                id.to_string()
            },
            name: inst.rec.name.clone(),
            version: inst.rec.version.clone(),
            input: inst.rec.input.clone(),
            execution_id: None,
            scheduled_start_ms: None,
            tags: inst.rec.tags.clone(),
            parent: None,
            parent_trace_context: None,
        };
        let mut b = self.begin(&mut st);
        let new = ni.instance_id.clone();
        self.create_instance(&mut st, &mut b, ni);
        Ok((new, self.submit(&mut st, b)))
    }

    fn prepare_rewind(st: &mut State, b: &mut Batch, id: &str, reason: Option<String>) {
        let Some(inst) = st.instances.get_mut(id) else {
            return;
        };
        inst.rec.status = OrchestrationStatus::Running as i32;
        inst.rec.output = None;
        inst.rec.failure_details = None;
        inst.rec.completed_ms = None;
        inst.rec.updated_ms = now_ms();
        Self::put_instance(b, inst);
        let ev = event(
            -1,
            EventType::ExecutionRewound(proto::ExecutionRewoundEvent {
                reason,
                ..Default::default()
            }),
        );
        Self::push_inbox(st, b, id, ev);
        Self::notify_waiters(st, b, id);
    }

    pub(crate) fn rewind(&self, id: &str, reason: Option<String>) -> Result<CommitWait, Status> {
        let mut st = self.lock();
        self.refuse(&st)?;
        let inst = st.instances.get(id).ok_or_else(|| not_found(id))?;
        if inst.rec.status != OrchestrationStatus::Failed as i32 {
            return Err(Status::failed_precondition(format!(
                "orchestration instance '{id}' is {}; only failed instances can be rewound",
                status_name(inst.rec.status)
            )));
        }
        let mut b = self.begin(&mut st);
        Self::prepare_rewind(&mut st, &mut b, id, reason);
        Ok(self.submit(&mut st, b))
    }

    /// Purges the given instances (terminal ones only); returns how many were deleted.
    pub(crate) fn purge(&self, ids: Vec<String>, recursive: bool) -> (i32, CommitWait) {
        let mut st = self.lock();
        let mut b = self.begin(&mut st);
        let mut count = 0;
        let mut todo = ids;
        while let Some(id) = todo.pop() {
            let Some(inst) = st.instances.get(&id) else {
                continue;
            };
            if !is_terminal(inst.rec.status) {
                continue;
            }
            if recursive {
                todo.extend(inst.rec.children.iter().cloned());
            }
            Self::drop_pending_work(&mut st, &mut b, &id);
            st.instances.remove(&id);
            b.ops.push(WriteOp::DeleteInstance(id.clone()));
            st.purging.insert(id.clone(), b.seq);
            Self::notify_waiters(&mut st, &b, &id);
            count += 1;
        }
        (count, self.submit(&mut st, b))
    }

    /// Ids of terminal instances matching a purge filter.
    pub(crate) fn purge_candidates(
        &self,
        from: Option<i64>,
        to: Option<i64>,
        statuses: &[i32],
    ) -> Vec<String> {
        let st = self.lock();
        st.instances
            .values()
            .filter(|i| is_terminal(i.rec.status))
            .filter(|i| statuses.is_empty() || statuses.contains(&i.rec.status))
            .filter(|i| from.is_none_or(|f| i.rec.created_ms >= f))
            .filter(|i| to.is_none_or(|t| i.rec.created_ms < t))
            .map(|i| i.rec.instance_id.clone())
            .collect()
    }

    // ------------------------------------------------------------------------------------
    // Reads
    // ------------------------------------------------------------------------------------

    /// Waits until `done` holds for the instance (or it disappears). `None` = not found.
    pub(crate) async fn wait_for(
        &self,
        id: &str,
        payloads: bool,
        deadline: Option<tokio::time::Instant>,
        done: fn(i32) -> bool,
    ) -> Result<Option<OrchestrationState>, Status> {
        let mut stop = self.shutdown_signal();
        loop {
            let rx = {
                let mut st = self.lock();
                let durable = self.signal.durable_seq.load(Ordering::SeqCst);
                match st.instances.get(id) {
                    None if !st.purging.contains_key(id) => return Ok(None),
                    Some(inst) if inst.status_seq <= durable && done(inst.rec.status) => {
                        return Ok(Some(to_state(&inst.rec, payloads)));
                    }
                    _ => {}
                }
                self.refuse(&st)?;
                let (tx, rx) = oneshot::channel();
                st.waiters.entry(id.to_string()).or_default().push(tx);
                rx
            };
            let expired = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = rx => {}
                _ = expired => {
                    return Err(Status::deadline_exceeded(format!(
                        "timed out waiting for orchestration instance '{id}'; wait longer or poll with GetInstance"
                    )));
                }
                _ = stop.changed() => {
                    return Err(Status::unavailable("the sidecar is shutting down"));
                }
            }
        }
    }

    pub(crate) fn history(&self, id: &str) -> Option<Vec<HistoryEvent>> {
        let st = self.lock();
        st.instances.get(id).map(|i| i.history.clone())
    }

    /// Instances matching a query, sorted by creation time then id.
    pub(crate) fn query(
        &self,
        statuses: &[i32],
        from: Option<i64>,
        to: Option<i64>,
        prefix: Option<&str>,
        payloads: bool,
    ) -> Vec<OrchestrationState> {
        let st = self.lock();
        let mut v: Vec<&Instance> = st
            .instances
            .values()
            .filter(|i| statuses.is_empty() || statuses.contains(&i.rec.status))
            .filter(|i| from.is_none_or(|f| i.rec.created_ms >= f))
            .filter(|i| to.is_none_or(|t| i.rec.created_ms < t))
            .filter(|i| prefix.is_none_or(|p| i.rec.instance_id.starts_with(p)))
            .collect();
        v.sort_by(|a, b| {
            (a.rec.created_ms, &a.rec.instance_id).cmp(&(b.rec.created_ms, &b.rec.instance_id))
        });
        v.into_iter().map(|i| to_state(&i.rec, payloads)).collect()
    }

    /// Terminal instances as (completed_ms, id), sorted.
    pub(crate) fn completed_ids(
        &self,
        statuses: &[i32],
        from: Option<i64>,
        to: Option<i64>,
    ) -> Vec<(i64, String)> {
        let st = self.lock();
        let mut v: Vec<(i64, String)> = st
            .instances
            .values()
            .filter(|i| is_terminal(i.rec.status))
            .filter(|i| statuses.is_empty() || statuses.contains(&i.rec.status))
            .filter_map(|i| i.rec.completed_ms.map(|c| (c, i.rec.instance_id.clone())))
            .filter(|(c, _)| from.is_none_or(|f| *c >= f) && to.is_none_or(|t| *c < t))
            .collect();
        v.sort();
        v
    }

    // ------------------------------------------------------------------------------------
    // Worker side
    // ------------------------------------------------------------------------------------

    pub(crate) fn add_stream(
        &self,
        tx: mpsc::UnboundedSender<Result<WorkItem, Status>>,
        filters: Filters,
        max_orch: usize,
        max_act: usize,
        last_send: Arc<AtomicI64>,
        history_streaming: bool,
    ) -> Result<u64, Status> {
        let mut st = self.lock();
        self.refuse(&st)?;
        let id = st.next_stream;
        st.next_stream += 1;
        st.streams.insert(
            id,
            WorkStream {
                tx,
                filters,
                max_orch,
                max_act,
                orch_in_flight: 0,
                act_in_flight: 0,
                last_send,
                history_streaming,
            },
        );
        self.pump(&mut st);
        Ok(id)
    }

    /// A worker stream ended: everything it had in flight goes back to the queues.
    pub(crate) fn remove_stream(&self, stream: u64) {
        let mut st = self.lock();
        st.streams.remove(&stream);
        let lost: Vec<String> = st
            .tokens
            .iter()
            .filter(|(_, d)| match d {
                Dispatched::Orchestration { stream: s, .. }
                | Dispatched::Activity { stream: s, .. } => *s == stream,
            })
            .map(|(t, _)| t.clone())
            .collect();
        for token in lost {
            Self::abandon_locked(&mut st, &token);
        }
        self.pump(&mut st);
    }

    /// Removes a dispatch token and frees its slot on the stream it was sent on. Every token
    /// leaves `tokens` through here, so a stream's in-flight counts never leak.
    fn release_token(st: &mut State, token: &str) -> Option<Dispatched> {
        let d = st.tokens.remove(token)?;
        match &d {
            Dispatched::Orchestration { stream, .. } => {
                if let Some(s) = st.streams.get_mut(stream) {
                    s.orch_in_flight = s.orch_in_flight.saturating_sub(1);
                }
            }
            Dispatched::Activity { stream, .. } => {
                if let Some(s) = st.streams.get_mut(stream) {
                    s.act_in_flight = s.act_in_flight.saturating_sub(1);
                }
            }
        }
        Some(d)
    }

    fn abandon_locked(st: &mut State, token: &str) -> bool {
        let Some(d) = Self::release_token(st, token) else {
            return false;
        };
        match d {
            Dispatched::Orchestration { instance_id, .. } => {
                if let Some(inst) = st.instances.get_mut(&instance_id) {
                    if inst.in_flight.as_ref().is_some_and(|f| f.token == token) {
                        inst.in_flight = None;
                        inst.partial.clear();
                        if !inst.queued {
                            inst.queued = true;
                            st.ready.push_front(instance_id);
                        }
                    }
                }
            }
            Dispatched::Activity { key, .. } => {
                if let Some(a) = st.activities.get_mut(&key) {
                    a.dispatched = None;
                    st.activity_queue.push_front(key);
                }
            }
        }
        true
    }

    pub(crate) fn abandon(&self, token: &str) {
        let mut st = self.lock();
        Self::abandon_locked(&mut st, token);
        self.pump(&mut st);
    }

    fn orchestration_dispatchable(inst: &Instance, now: i64) -> bool {
        if inst.in_flight.is_some() || is_terminal(inst.rec.status) {
            return false;
        }
        if inst.inbox.is_empty() && !inst.rec.force_dispatch {
            return false;
        }
        let has = |f: fn(&EventType) -> bool| {
            inst.inbox
                .iter()
                .any(|(_, e)| e.event_type.as_ref().is_some_and(f))
        };
        let terminating = has(|e| matches!(e, EventType::ExecutionTerminated(_)));
        if inst.rec.status == OrchestrationStatus::Suspended as i32 {
            return terminating || has(|e| matches!(e, EventType::ExecutionResumed(_)));
        }
        if inst.rec.scheduled_start_ms.is_some_and(|s| s > now) && inst.history.is_empty() {
            return terminating;
        }
        true
    }

    /// Hands ready, durable work to workers with free capacity.
    fn pump(&self, st: &mut State) {
        self.wake_durable(st);
        if st.streams.is_empty() || st.closing || self.signal.failure().is_some() {
            return;
        }
        let durable = self.signal.durable_seq.load(Ordering::SeqCst);
        let now = now_ms();
        // Orchestrations.
        if st.streams.values().any(|s| s.orch_in_flight < s.max_orch) {
            let mut keep = VecDeque::new();
            while let Some(id) = st.ready.pop_front() {
                let Some(inst) = st.instances.get_mut(&id) else {
                    continue;
                };
                inst.queued = false;
                if !Self::orchestration_dispatchable(inst, now) {
                    continue;
                }
                if inst.ready_seq > durable {
                    inst.queued = true;
                    keep.push_back(id);
                    continue;
                }
                let (name, version) = (inst.rec.name.clone(), inst.rec.version.clone());
                let Some(stream) = pick_stream(st, true, &name, version.as_deref()) else {
                    if let Some(inst) = st.instances.get_mut(&id) {
                        inst.queued = true;
                    }
                    keep.push_back(id);
                    if !st.streams.values().any(|s| s.orch_in_flight < s.max_orch) {
                        break;
                    }
                    continue;
                };
                self.dispatch_orchestration(st, &id, stream, now);
            }
            // Put the skipped entries back in front, in order: O(skipped), not O(queue).
            while let Some(id) = keep.pop_back() {
                st.ready.push_front(id);
            }
        }
        // Activities.
        if st.streams.values().any(|s| s.act_in_flight < s.max_act) {
            let mut keep = VecDeque::new();
            while let Some(key) = st.activity_queue.pop_front() {
                let Some(a) = st.activities.get(&key) else {
                    continue;
                };
                if a.dispatched.is_some() {
                    continue;
                }
                if a.ready_seq > durable {
                    keep.push_back(key);
                    continue;
                }
                let (name, version) = (a.request.name.clone(), a.request.version.clone());
                let Some(stream) = pick_stream(st, false, &name, version.as_deref()) else {
                    keep.push_back(key);
                    if !st.streams.values().any(|s| s.act_in_flight < s.max_act) {
                        break;
                    }
                    continue;
                };
                let token = next_token(st);
                let Some(a) = st.activities.get_mut(&key) else {
                    continue;
                };
                a.dispatched = Some(token.clone());
                let item = WorkItem {
                    request: Some(work_item::Request::ActivityRequest(a.request.clone())),
                    completion_token: token.clone(),
                };
                st.tokens
                    .insert(token, Dispatched::Activity { key, stream });
                send(st, stream, item, false);
            }
            while let Some(key) = keep.pop_back() {
                st.activity_queue.push_front(key);
            }
        }
    }

    fn dispatch_orchestration(&self, st: &mut State, id: &str, stream: u64, now: i64) {
        let token = next_token(st);
        let Some(inst) = st.instances.get_mut(id) else {
            return;
        };
        let mut new_events = Vec::with_capacity(inst.inbox.len() + 1);
        new_events.push(HistoryEvent {
            event_id: -1,
            timestamp: Some(from_ms(now)),
            event_type: Some(EventType::OrchestratorStarted(
                proto::OrchestratorStartedEvent {},
            )),
        });
        new_events.extend(inst.inbox.iter().map(|(_, e)| e.clone()));
        let up_to_seq = inst.inbox.back().map(|(s, _)| *s);
        let mut request = OrchestratorRequest {
            instance_id: id.to_string(),
            execution_id: Some(inst.rec.execution_id.clone()),
            past_events: inst.history.clone(),
            new_events: new_events.clone(),
            ..Default::default()
        };
        // A work item over the message limit would fail on the worker's side and make it
        // reconnect forever: stream the history to workers that can fetch it, fail otherwise.
        let size = item_len(&request, &token);
        if size > super::MAX_MESSAGE_BYTES {
            let streaming = st.streams.get(&stream).is_some_and(|s| s.history_streaming);
            request.past_events.clear();
            if !streaming || item_len(&request, &token) > super::MAX_MESSAGE_BYTES {
                self.fail_oversized(st, id, size);
                return;
            }
            request.requires_history_streaming = true;
        }
        let Some(inst) = st.instances.get_mut(id) else {
            return;
        };
        inst.in_flight = Some(InFlight {
            token: token.clone(),
            up_to_seq,
            new_events,
        });
        inst.partial.clear();
        st.tokens.insert(
            token.clone(),
            Dispatched::Orchestration {
                instance_id: id.to_string(),
                stream,
            },
        );
        let item = WorkItem {
            request: Some(work_item::Request::OrchestratorRequest(request)),
            completion_token: token,
        };
        send(st, stream, item, true);
    }

    /// Fails an instance whose next work item cannot fit in one gRPC message.
    fn fail_oversized(&self, st: &mut State, id: &str, size: usize) {
        let mut b = self.begin(st);
        let Some(inst) = st.instances.get_mut(id) else {
            return;
        };
        let failure = TaskFailureDetails {
            error_type: "HistoryTooLarge".into(),
            error_message: format!(
                "history of {size} bytes exceeds the 16 MiB message limit; use continue-as-new to bound history"
            ),
            ..Default::default()
        };
        tracing::error!(instance_id = id, size, "{}", failure.error_message);
        let now = now_ms();
        let done = event(
            -1,
            EventType::ExecutionCompleted(proto::ExecutionCompletedEvent {
                orchestration_status: OrchestrationStatus::Failed as i32,
                result: None,
                failure_details: Some(failure.clone()),
            }),
        );
        b.ops.push(WriteOp::AppendHistory {
            instance_id: id.to_string(),
            start_index: inst.history.len() as u64,
            events: vec![done.encode_to_vec()],
        });
        inst.history.push(done);
        inst.rec.status = OrchestrationStatus::Failed as i32;
        inst.rec.failure_details = Some(failure);
        inst.rec.output = None;
        inst.rec.completed_ms = Some(now);
        inst.rec.updated_ms = now;
        inst.rec.force_dispatch = false;
        inst.inbox.clear();
        b.ops.push(WriteOp::ClearInbox(id.to_string()));
        Self::put_instance(&mut b, inst);
        Self::drop_pending_work(st, &mut b, id);
        self.run_outbound(st, &mut b, vec![Outbound::NotifyParent(id.to_string())]);
        Self::notify_waiters(st, &b, id);
        // Called from `pump`: submit without pumping again; the commit signal pumps.
        self.storage.submit(b.seq, b.ops, None);
    }

    pub(crate) fn complete_activity(&self, resp: proto::ActivityResponse) -> Option<CommitWait> {
        let mut st = self.lock();
        let token = if resp.completion_token.is_empty() {
            // Old workers echo no token: correlate by instance id + task id.
            st.tokens
                .iter()
                .find(|(_, d)| match d {
                    Dispatched::Activity { key, .. } => st.activities.get(key).is_some_and(|a| {
                        a.request.task_id == resp.task_id
                            && a.request
                                .orchestration_instance
                                .as_ref()
                                .is_some_and(|i| i.instance_id == resp.instance_id)
                    }),
                    Dispatched::Orchestration { .. } => false,
                })
                .map(|(t, _)| t.clone())?
        } else {
            resp.completion_token.clone()
        };
        let Some(Dispatched::Activity { key, .. }) = st.tokens.get(&token).cloned() else {
            return None;
        };
        Self::release_token(&mut st, &token);
        let Some(activity) = st.activities.remove(&key) else {
            // The instance went terminal or was purged meanwhile: nothing to deliver.
            self.pump(&mut st);
            return None;
        };
        let mut b = self.begin(&mut st);
        b.ops.push(WriteOp::DeleteActivity(key));
        let target = activity.request.orchestration_instance.unwrap_or_default();
        let live = st.instances.get(&target.instance_id).is_some_and(|i| {
            !is_terminal(i.rec.status)
                && target
                    .execution_id
                    .as_ref()
                    .is_none_or(|e| *e == i.rec.execution_id)
        });
        if live {
            let ty = match resp.failure_details {
                Some(f) => EventType::TaskFailed(proto::TaskFailedEvent {
                    task_scheduled_id: activity.request.task_id,
                    failure_details: Some(f),
                }),
                None => EventType::TaskCompleted(proto::TaskCompletedEvent {
                    task_scheduled_id: activity.request.task_id,
                    result: resp.result,
                }),
            };
            Self::push_inbox(&mut st, &mut b, &target.instance_id, event(-1, ty));
        }
        Some(self.submit(&mut st, b))
    }

    pub(crate) fn complete_orchestration(
        &self,
        resp: proto::OrchestratorResponse,
    ) -> Option<CommitWait> {
        let mut st = self.lock();
        let token = if resp.completion_token.is_empty() {
            let inst = st.instances.get(&resp.instance_id)?;
            inst.in_flight.as_ref()?.token.clone()
        } else {
            resp.completion_token.clone()
        };
        let Some(Dispatched::Orchestration { instance_id, .. }) = st.tokens.get(&token).cloned()
        else {
            return None;
        };
        let id = instance_id;
        let current = st
            .instances
            .get(&id)
            .and_then(|i| i.in_flight.as_ref())
            .is_some_and(|f| f.token == token);
        if !current {
            // The instance was replaced or purged since dispatch: drop the stale result.
            Self::release_token(&mut st, &token);
            self.pump(&mut st);
            return None;
        }
        if resp.is_partial {
            if let Some(inst) = st.instances.get_mut(&id) {
                inst.partial.extend(resp.actions);
            }
            return None;
        }
        Self::release_token(&mut st, &token);
        let mut b = self.begin(&mut st);
        let out = self.apply_episode(&mut st, &mut b, &id, resp);
        self.run_outbound(&mut st, &mut b, out);
        Self::mark_ready(&mut st, &b, &id);
        Self::notify_waiters(&mut st, &b, &id);
        Some(self.submit(&mut st, b))
    }

    /// Commits an episode's new events and applies its actions in order.
    fn apply_episode(
        &self,
        st: &mut State,
        b: &mut Batch,
        id: &str,
        resp: proto::OrchestratorResponse,
    ) -> Vec<Outbound> {
        let mut out = Vec::new();
        let mut new_timers = Vec::new();
        let mut new_activities = Vec::new();
        let next_key = &mut st.next_key;
        let Some(inst) = st.instances.get_mut(id) else {
            return out;
        };
        let Some(flight) = inst.in_flight.take() else {
            return out;
        };
        let mut actions = std::mem::take(&mut inst.partial);
        actions.extend(resp.actions);
        let now = now_ms();
        if let Some(up_to) = flight.up_to_seq {
            while inst.inbox.front().is_some_and(|(s, _)| *s <= up_to) {
                inst.inbox.pop_front();
            }
            b.ops.push(WriteOp::DeleteInbox {
                instance_id: id.to_string(),
                up_to,
            });
        }
        inst.rec.force_dispatch = false;
        inst.rec.custom_status = resp.custom_status;
        inst.rec.updated_ms = now;
        if inst.rec.status == OrchestrationStatus::Pending as i32 {
            inst.rec.status = OrchestrationStatus::Running as i32;
        }

        let old_len = inst.history.len();
        let mut replaced = false;
        let rewind = actions
            .iter()
            .find_map(|a| match &a.orchestrator_action_type {
                Some(OrchestratorActionType::RewindOrchestration(r)) => Some(r.new_history.clone()),
                _ => None,
            });
        if let Some(new_history) = rewind {
            // The worker rewrote the history (rewind): replace it and replay from scratch.
            inst.history = new_history;
            if let Some(exec) = inst.history.iter().find_map(|e| match &e.event_type {
                Some(EventType::ExecutionStarted(s)) => s
                    .orchestration_instance
                    .as_ref()
                    .and_then(|i| i.execution_id.clone()),
                _ => None,
            }) {
                inst.rec.execution_id = exec;
            }
            inst.rec.status = OrchestrationStatus::Running as i32;
            inst.rec.output = None;
            inst.rec.failure_details = None;
            inst.rec.completed_ms = None;
            inst.rec.force_dispatch = true;
            let created: Vec<String> = inst
                .history
                .iter()
                .filter_map(|e| match &e.event_type {
                    Some(EventType::SubOrchestrationInstanceCreated(c)) => {
                        Some(c.instance_id.clone())
                    }
                    _ => None,
                })
                .collect();
            let reason = inst.history.iter().rev().find_map(|e| match &e.event_type {
                Some(EventType::ExecutionRewound(r)) => Some(r.reason.clone()),
                _ => None,
            });
            let events: Vec<Vec<u8>> = inst.history.iter().map(|e| e.encode_to_vec()).collect();
            b.ops.push(WriteOp::ReplaceHistory {
                instance_id: id.to_string(),
                events,
            });
            Self::put_instance(b, inst);
            for child in created {
                let failed = st
                    .instances
                    .get(&child)
                    .is_some_and(|c| c.rec.status == OrchestrationStatus::Failed as i32);
                if failed {
                    Self::prepare_rewind(st, b, &child, reason.clone().flatten());
                }
            }
            return out;
        }

        inst.history.extend(flight.new_events);
        let exec_id = inst.rec.execution_id.clone();
        let mut finished = false;
        for action in actions {
            let aid = action.id;
            let Some(kind) = action.orchestrator_action_type else {
                continue;
            };
            match kind {
                OrchestratorActionType::ScheduleTask(a) if !finished => {
                    inst.history.push(event(
                        aid,
                        EventType::TaskScheduled(proto::TaskScheduledEvent {
                            name: a.name.clone(),
                            version: a.version.clone(),
                            input: a.input.clone(),
                            parent_trace_context: a.parent_trace_context.clone(),
                            tags: a.tags.clone(),
                        }),
                    ));
                    let key = *next_key;
                    *next_key += 1;
                    let request = proto::ActivityRequest {
                        name: a.name,
                        version: a.version,
                        input: a.input,
                        orchestration_instance: Some(OrchestrationInstance {
                            instance_id: id.to_string(),
                            execution_id: Some(exec_id.clone()),
                        }),
                        task_id: aid,
                        parent_trace_context: a.parent_trace_context,
                        tags: a.tags,
                    };
                    b.ops.push(WriteOp::PutActivity(Box::new(ActivityRecord {
                        key,
                        request: Some(request.clone()),
                    })));
                    new_activities.push((key, request));
                }
                OrchestratorActionType::CreateTimer(a) if !finished => {
                    let fire_at = a.fire_at.unwrap_or_else(|| from_ms(now));
                    inst.history.push(event(
                        aid,
                        EventType::TimerCreated(proto::TimerCreatedEvent {
                            fire_at: Some(fire_at),
                        }),
                    ));
                    let key = *next_key;
                    *next_key += 1;
                    let rec = TimerRecord {
                        key,
                        instance_id: id.to_string(),
                        execution_id: exec_id.clone(),
                        fire_at_ms: to_ms(&fire_at),
                        event: Some(HistoryEvent {
                            event_id: -1,
                            timestamp: None,
                            event_type: Some(EventType::TimerFired(proto::TimerFiredEvent {
                                fire_at: Some(fire_at),
                                timer_id: aid,
                            })),
                        }),
                    };
                    b.ops.push(WriteOp::PutTimer(Box::new(rec.clone())));
                    new_timers.push(rec);
                }
                OrchestratorActionType::CreateSubOrchestration(a) if !finished => {
                    let child_id = if a.instance_id.is_empty() {
                        format!("{id}:{:04x}", aid)
                    } else {
                        a.instance_id.clone()
                    };
                    inst.history.push(event(
                        aid,
                        EventType::SubOrchestrationInstanceCreated(
                            proto::SubOrchestrationInstanceCreatedEvent {
                                instance_id: child_id.clone(),
                                name: a.name.clone(),
                                version: a.version.clone(),
                                input: a.input.clone(),
                                parent_trace_context: a.parent_trace_context.clone(),
                                tags: a.tags.clone(),
                            },
                        ),
                    ));
                    out.push(Outbound::CreateChild(
                        Box::new(NewInstance {
                            instance_id: child_id,
                            name: a.name,
                            version: a.version,
                            input: a.input,
                            execution_id: None,
                            scheduled_start_ms: None,
                            tags: a.tags,
                            parent: Some(ParentInstanceInfo {
                                task_scheduled_id: aid,
                                name: Some(inst.rec.name.clone()),
                                version: inst.rec.version.clone(),
                                orchestration_instance: Some(OrchestrationInstance {
                                    instance_id: id.to_string(),
                                    execution_id: Some(exec_id.clone()),
                                }),
                            }),
                            parent_trace_context: a.parent_trace_context,
                        }),
                        id.to_string(),
                    ));
                }
                OrchestratorActionType::SendEvent(a) => {
                    let target = a.instance.map(|i| i.instance_id).unwrap_or_default();
                    if !finished {
                        inst.history.push(event(
                            aid,
                            EventType::EventSent(proto::EventSentEvent {
                                instance_id: target.clone(),
                                name: a.name.clone(),
                                input: a.data.clone(),
                            }),
                        ));
                    }
                    let ev = event(
                        -1,
                        EventType::EventRaised(proto::EventRaisedEvent {
                            name: a.name,
                            input: a.data,
                        }),
                    );
                    if target == id {
                        let seq = inst.next_inbox_seq;
                        inst.next_inbox_seq += 1;
                        b.ops.push(WriteOp::PutInbox {
                            instance_id: id.to_string(),
                            seq,
                            event: ev.encode_to_vec(),
                        });
                        inst.inbox.push_back((seq, ev));
                    } else {
                        out.push(Outbound::Event(target, Box::new(ev)));
                    }
                }
                OrchestratorActionType::TerminateOrchestration(a) => {
                    out.push(Outbound::Terminate {
                        target: a.instance_id,
                        output: a.reason,
                        recurse: a.recurse,
                    });
                }
                OrchestratorActionType::CompleteOrchestration(a) if !finished => {
                    finished = true;
                    if a.orchestration_status == OrchestrationStatus::ContinuedAsNew as i32 {
                        // New generation: fresh history, carry-over and waiting events first.
                        let new_exec = new_id();
                        if a.new_version.is_some() {
                            inst.rec.version = a.new_version.clone();
                        }
                        inst.rec.input = a.result.clone();
                        inst.rec.execution_id = new_exec.clone();
                        inst.rec.output = None;
                        inst.rec.failure_details = None;
                        for (k, v) in a.tags {
                            inst.rec.tags.insert(k, v);
                        }
                        let started = event(
                            -1,
                            EventType::ExecutionStarted(proto::ExecutionStartedEvent {
                                name: inst.rec.name.clone(),
                                version: inst.rec.version.clone(),
                                input: a.result,
                                orchestration_instance: Some(OrchestrationInstance {
                                    instance_id: id.to_string(),
                                    execution_id: Some(new_exec),
                                }),
                                parent_instance: inst.rec.parent.clone(),
                                scheduled_start_timestamp: None,
                                parent_trace_context: None,
                                orchestration_span_id: None,
                                tags: inst.rec.tags.clone(),
                            }),
                        );
                        let mut events = vec![started];
                        events.extend(a.carryover_events);
                        events.extend(inst.inbox.drain(..).map(|(_, e)| e));
                        b.ops.push(WriteOp::ClearInbox(id.to_string()));
                        for ev in events {
                            let seq = inst.next_inbox_seq;
                            inst.next_inbox_seq += 1;
                            b.ops.push(WriteOp::PutInbox {
                                instance_id: id.to_string(),
                                seq,
                                event: ev.encode_to_vec(),
                            });
                            inst.inbox.push_back((seq, ev));
                        }
                        inst.history.clear();
                        replaced = true;
                        // Events sent to itself after this action go to the new generation.
                        finished = false;
                        continue;
                    }
                    inst.history.push(event(
                        aid,
                        EventType::ExecutionCompleted(proto::ExecutionCompletedEvent {
                            orchestration_status: a.orchestration_status,
                            result: a.result.clone(),
                            failure_details: a.failure_details.clone(),
                        }),
                    ));
                    inst.rec.status = if is_terminal(a.orchestration_status) {
                        a.orchestration_status
                    } else {
                        OrchestrationStatus::Completed as i32
                    };
                    inst.rec.output = a.result;
                    inst.rec.failure_details = a.failure_details;
                    inst.rec.completed_ms = Some(now);
                    if !inst.inbox.is_empty() {
                        inst.inbox.clear();
                        b.ops.push(WriteOp::ClearInbox(id.to_string()));
                    }
                    out.push(Outbound::NotifyParent(id.to_string()));
                }
                OrchestratorActionType::SendEntityMessage(_) => {
                    tracing::warn!(
                        instance_id = id,
                        "ignoring an entity action: entities are not supported by this sidecar yet"
                    );
                }
                _ => {}
            }
        }
        if replaced {
            let events: Vec<Vec<u8>> = inst.history.iter().map(|e| e.encode_to_vec()).collect();
            b.ops.push(WriteOp::ReplaceHistory {
                instance_id: id.to_string(),
                events,
            });
        } else {
            let events: Vec<Vec<u8>> = inst.history[old_len..]
                .iter()
                .map(|e| e.encode_to_vec())
                .collect();
            b.ops.push(WriteOp::AppendHistory {
                instance_id: id.to_string(),
                start_index: old_len as u64,
                events,
            });
        }
        Self::put_instance(b, inst);
        let mut woke = false;
        for rec in new_timers {
            woke = true;
            st.timers
                .insert((rec.fire_at_ms, rec.key), TimerEntry::Fire(Box::new(rec)));
        }
        if woke {
            self.timer_wake.notify_one();
        }
        for (key, request) in new_activities {
            st.activities.insert(
                key,
                Activity {
                    request,
                    dispatched: None,
                    ready_seq: b.seq,
                },
            );
            st.activity_queue.push_back(key);
        }
        if st
            .instances
            .get(id)
            .is_some_and(|i| is_terminal(i.rec.status))
        {
            Self::drop_pending_work(st, b, id);
        }
        out
    }

    /// Fires every due timer; returns when the next one is due.
    fn fire_due_timers(&self) -> Option<i64> {
        let mut st = self.lock();
        let now = now_ms();
        let mut b = self.begin(&mut st);
        let mut any = false;
        while let Some(entry) = st.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            any = true;
            match entry.remove() {
                TimerEntry::Start(id) => Self::mark_ready(&mut st, &b, &id),
                TimerEntry::Fire(rec) => {
                    b.ops.push(WriteOp::DeleteTimer(rec.key));
                    let live = st.instances.get(&rec.instance_id).is_some_and(|i| {
                        !is_terminal(i.rec.status) && i.rec.execution_id == rec.execution_id
                    });
                    if let (true, Some(mut ev)) = (live, rec.event) {
                        ev.timestamp = Some(from_ms(now));
                        Self::push_inbox(&mut st, &mut b, &rec.instance_id, ev);
                    }
                }
            }
        }
        let next = st.timers.first_key_value().map(|(k, _)| k.0);
        if any {
            drop(self.submit(&mut st, b));
        }
        next
    }
}

/// Encoded size of the work item that would carry `request` (an upper bound: field keys and
/// length prefixes are counted at their largest).
fn item_len(request: &OrchestratorRequest, token: &str) -> usize {
    request.encoded_len() + token.len() + 2 * (1 + 10)
}

fn next_token(st: &mut State) -> String {
    let n = st.next_token;
    st.next_token += 1;
    format!("{}-{n}", st.token_prefix)
}

fn pick_stream(st: &mut State, orch: bool, name: &str, version: Option<&str>) -> Option<u64> {
    let start = st.rr;
    let found = st
        .streams
        .range(start..)
        .chain(st.streams.range(..start))
        .find(|(_, s)| {
            let free = if orch {
                s.orch_in_flight < s.max_orch
            } else {
                s.act_in_flight < s.max_act
            };
            free && s.filters.accepts(orch, name, version)
        })
        .map(|(id, _)| *id);
    if let Some(id) = found {
        st.rr = id.wrapping_add(1);
    }
    found
}

fn send(st: &mut State, stream: u64, item: WorkItem, orch: bool) {
    if let Some(s) = st.streams.get_mut(&stream) {
        if orch {
            s.orch_in_flight += 1;
        } else {
            s.act_in_flight += 1;
        }
        s.last_send.store(now_ms(), Ordering::Relaxed);
        // A failed send means the stream is going away; its drop guard requeues the work.
        let _ = s.tx.send(Ok(item));
    }
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!(
        "no orchestration instance with id '{id}'; check the id (it may have been purged)"
    ))
}

pub(crate) fn status_name(status: i32) -> &'static str {
    OrchestrationStatus::try_from(status)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN")
}

fn to_state(rec: &InstanceRecord, payloads: bool) -> OrchestrationState {
    OrchestrationState {
        instance_id: rec.instance_id.clone(),
        name: rec.name.clone(),
        version: rec.version.clone(),
        orchestration_status: rec.status,
        scheduled_start_timestamp: rec.scheduled_start_ms.map(from_ms),
        created_timestamp: Some(from_ms(rec.created_ms)),
        last_updated_timestamp: Some(from_ms(rec.updated_ms)),
        input: if payloads { rec.input.clone() } else { None },
        output: if payloads { rec.output.clone() } else { None },
        custom_status: if payloads {
            rec.custom_status.clone()
        } else {
            None
        },
        failure_details: rec.failure_details.clone(),
        execution_id: Some(rec.execution_id.clone()),
        completed_timestamp: rec.completed_ms.map(from_ms),
        parent_instance_id: rec
            .parent
            .as_ref()
            .and_then(|p| p.orchestration_instance.as_ref())
            .map(|i| i.instance_id.clone()),
        tags: rec.tags.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Done = oneshot::Sender<Result<(), Arc<StorageError>>>;

    /// A storage whose batches become durable only when the test releases them.
    struct HeldStorage {
        signal: Arc<CommitSignal>,
        held: Mutex<Vec<(u64, Done)>>,
    }

    impl Storage for HeldStorage {
        fn load(&self) -> Result<LoadedState, StorageError> {
            Ok(LoadedState::default())
        }
        fn submit(&self, seq: u64, _batch: Vec<WriteOp>, done: Option<Done>) {
            if let Some(done) = done {
                self.held.lock().unwrap().push((seq, done));
            }
        }
        fn close(&self) {}
    }

    impl HeldStorage {
        fn release(&self) {
            for (seq, done) in std::mem::take(&mut *self.held.lock().unwrap()) {
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
        });
        let engine = Engine::new(
            Arc::clone(&storage) as Arc<dyn Storage>,
            signal,
            LoadedState::default(),
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
            .add_stream(
                tx,
                Filters::default(),
                usize::MAX,
                usize::MAX,
                Arc::new(AtomicI64::new(0)),
                false,
            )
            .unwrap();
        let _commit = engine.start_instance(new_instance("a"), &[]).unwrap();
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
        let _commit = engine
            .complete_orchestration(proto::OrchestratorResponse {
                instance_id: "a".into(),
                actions: vec![done],
                completion_token: item.completion_token,
                ..Default::default()
            })
            .unwrap();
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
        engine.begin_shutdown();
    }
}
