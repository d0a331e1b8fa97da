//! Routing between instances: events sent by one orchestration to another, termination
//! requests (recursive ones reach the children), sub-orchestration starts and the result a
//! finished child reports to its parent, and messages to entities (operations, lock requests
//! and releases). Deliveries produced while one instance is updated are
//! applied after it, in the same batch.

use std::collections::VecDeque;

use super::Engine;
use super::batch::Batch;
use super::lifecycle::NewInstance;
use super::state::{Dispatched, State};
use super::{check_length, event, is_terminal, status_name};
use crate::proto::{
    self, HistoryEvent, OrchestrationStatus, TaskFailureDetails, history_event::EventType,
};
use crate::storage::LockRequestRecord;

/// Events or commands for other instances, applied after the current instance is updated.
pub(super) enum Outbound {
    /// An event for the target's inbox (dropped when the target is gone or finished).
    Event(String, Box<HistoryEvent>),
    Terminate {
        target: String,
        output: Option<String>,
        recurse: bool,
    },
    /// Start a sub-orchestration of the given parent.
    CreateChild(Box<NewInstance>, String),
    /// The instance finished: tell its parent, if it has one.
    NotifyParent(String),
    /// An operation (signal or call) for an entity, now or at a time.
    EntityOp {
        target: String,
        event: Box<HistoryEvent>,
        at_ms: Option<i64>,
    },
    /// A critical section asks for its locks.
    LockRequest(Box<LockRequestRecord>),
    /// A critical section releases one entity.
    Unlock { target: String, section: String },
    /// The instance ended a generation: its locks are released.
    ReleaseLocks(String),
    /// The result of an entity call, for the calling orchestration if it still runs
    /// `execution_id` (any execution when `None`).
    CallResult {
        target: String,
        execution_id: Option<String>,
        event: Box<HistoryEvent>,
    },
    /// Start an orchestration an entity asked for (unless the id is in use).
    StartForEntity(Box<NewInstance>),
    /// A sub-orchestration was created: the parent records it (for recursive terminate and
    /// purge).
    AddChild { parent: String, child: String },
}

impl Engine {
    /// Applies cross-instance deliveries until none are left.
    pub(super) fn run_outbound(&self, st: &mut State, b: &mut Batch, out: Vec<Outbound>) {
        let mut out = VecDeque::from(out);
        while let Some(o) = out.pop_front() {
            let Some(o) = st.route_away(b, o) else {
                continue;
            };
            match o {
                Outbound::Event(target, ev) => st.deliver_event(b, &target, None, *ev),
                Outbound::Terminate {
                    target,
                    output,
                    recurse,
                } => terminate(st, b, &target, output, recurse, &mut out),
                Outbound::CreateChild(ni, parent_id) => {
                    self.create_child(st, b, *ni, parent_id, &mut out);
                }
                Outbound::NotifyParent(child_id) => {
                    if let Some(o) = parent_notice(st, &child_id) {
                        out.push_back(o);
                    }
                }
                Outbound::EntityOp {
                    target,
                    event,
                    at_ms,
                } => self.deliver_entity_op(st, b, &target, *event, at_ms),
                Outbound::LockRequest(request) => st.request_lock(b, *request),
                Outbound::Unlock { target, section } => st.unlock_entity(b, &target, &section),
                Outbound::ReleaseLocks(holder) => st.release_locks_of(b, &holder),
                Outbound::CallResult {
                    target,
                    execution_id,
                    event,
                } => st.deliver_event(b, &target, execution_id.as_deref(), *event),
                Outbound::StartForEntity(ni) => self.start_for_entity(st, b, *ni),
                Outbound::AddChild { parent, child } => {
                    if let Some(p) = st.instances.get_mut(&parent) {
                        if !p.rec.children.contains(&child) {
                            p.rec.children.push(child);
                            b.put_instance(&p.rec);
                        }
                    }
                }
            }
        }
    }

    /// Starts a sub-orchestration, or fails the parent's task when the id is too long or in
    /// use (see `child_id_in_use`).
    fn create_child(
        &self,
        st: &mut State,
        b: &mut Batch,
        ni: NewInstance,
        parent_id: String,
        out: &mut VecDeque<Outbound>,
    ) {
        let checked = check_length("the sub-orchestration's instance id", &ni.instance_id)
            .map_err(|status| ("InvalidArgument", status.message().to_owned()))
            .and_then(|()| self.child_id_in_use(st, &ni.instance_id, &parent_id));
        let in_storage = match checked {
            Ok(in_use) => in_use,
            Err((error_type, error_message)) => {
                let task_id = ni.parent.as_ref().map_or(-1, |p| p.task_scheduled_id);
                let ev = event(
                    -1,
                    EventType::SubOrchestrationInstanceFailed(
                        proto::SubOrchestrationInstanceFailedEvent {
                            task_scheduled_id: task_id,
                            failure_details: Some(TaskFailureDetails {
                                error_type: error_type.into(),
                                error_message,
                                ..Default::default()
                            }),
                        },
                    ),
                );
                out.push_back(Outbound::Event(parent_id, Box::new(ev)));
                return;
            }
        };
        let child = ni.instance_id.clone();
        self.create_instance(st, b, ni, Some(in_storage));
        out.push_back(Outbound::AddChild {
            parent: parent_id,
            child,
        });
    }

    /// Whether a sub-orchestration of `parent_id` may take instance id `id` (`Ok(true)`: it
    /// replaces a finished instance), or why not: the id belongs to a running instance, or to
    /// a finished one that is not an earlier child of the same parent. Re-using a finished
    /// child's id is allowed, as orchestrations that continue as new or are rewound schedule
    /// their children again under the same ids.
    fn child_id_in_use(
        &self,
        st: &State,
        id: &str,
        parent_id: &str,
    ) -> Result<bool, (&'static str, String)> {
        let existing = match self.record_of(st, id) {
            Ok(None) => return Ok(false),
            Ok(Some(rec)) => rec,
            Err(status) => {
                return Err((
                    "StorageError",
                    format!(
                        "could not check whether instance id '{id}' is in use: {}",
                        status.message()
                    ),
                ));
            }
        };
        let own_child = existing
            .parent
            .as_ref()
            .and_then(|p| p.orchestration_instance.as_ref())
            .is_some_and(|p| p.instance_id == parent_id);
        if !is_terminal(existing.status) {
            Err((
                "OrchestrationAlreadyExistsError",
                format!("an orchestration with instance id '{id}' is already running"),
            ))
        } else if !own_child {
            Err((
                "OrchestrationAlreadyExistsError",
                format!(
                    "instance id '{id}' belongs to a finished orchestration ({}) that is not a sub-orchestration of '{parent_id}'; choose another id or purge that instance first",
                    status_name(existing.status)
                ),
            ))
        } else {
            Ok(true)
        }
    }
}

/// Puts `ExecutionTerminated` in a live instance's inbox, drops its queued work and, when
/// recursive, queues the termination of its children.
fn terminate(
    st: &mut State,
    b: &mut Batch,
    target: &str,
    output: Option<String>,
    recurse: bool,
    out: &mut VecDeque<Outbound>,
) {
    let Some(inst) = st.instances.get(target) else {
        return;
    };
    if is_terminal(inst.rec.status) {
        return;
    }
    // Its children: those it heard were created, and those its own history created (the
    // notice of a child created in another partition may still be on its way).
    let mut children = inst.rec.children.clone();
    if recurse {
        let mut known: std::collections::HashSet<String> = children.iter().cloned().collect();
        for e in &inst.history {
            if let Some(EventType::SubOrchestrationInstanceCreated(created)) = &e.event_type {
                if known.insert(created.instance_id.clone()) {
                    children.push(created.instance_id.clone());
                }
            }
        }
    }
    let ev = event(
        -1,
        EventType::ExecutionTerminated(proto::ExecutionTerminatedEvent {
            input: output.clone(),
            recurse,
        }),
    );
    if inst.failed_deliveries > 0 {
        // Its work item is one workers refuse: no episode could apply the termination.
        let end = proto::ExecutionCompletedEvent {
            orchestration_status: OrchestrationStatus::Terminated as i32,
            result: output.clone(),
            failure_details: None,
        };
        out.extend(st.end_without_episode(b, target, vec![ev], end));
    } else {
        st.push_inbox(b, target, ev);
    }
    // Nothing it queued may start once termination was requested.
    st.drop_pending_work(b, target);
    // A PENDING instance never ran: termination wins over its first episode even when that
    // one is already with a worker (its completion is then ignored, and the instance is
    // dispatched again with the termination).
    let first_episode = st
        .instances
        .get(target)
        .filter(|i| i.rec.status == OrchestrationStatus::Pending as i32)
        .and_then(|i| i.in_flight.as_ref())
        .map(|f| f.token.clone());
    if let Some(token) = first_episode {
        let stream = st.tokens.get(&token).map(Dispatched::stream);
        st.abandon(&token);
        if let Some(stream) = stream {
            st.revoked.insert(token, stream);
        }
    }
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

/// The completion or failure event a finished child sends to its parent.
fn parent_notice(st: &State, child_id: &str) -> Option<Outbound> {
    let child = st.instances.get(child_id)?;
    let parent = child.rec.parent.clone()?;
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
        let failure = child
            .rec
            .failure_details
            .clone()
            .unwrap_or_else(|| TaskFailureDetails {
                error_type: "TaskTerminated".into(),
                error_message: format!("sub-orchestration '{child_id}' was terminated"),
                ..Default::default()
            });
        EventType::SubOrchestrationInstanceFailed(proto::SubOrchestrationInstanceFailedEvent {
            task_scheduled_id: parent.task_scheduled_id,
            failure_details: Some(failure),
        })
    };
    Some(Outbound::Event(parent_id, Box::new(event(-1, ev))))
}
