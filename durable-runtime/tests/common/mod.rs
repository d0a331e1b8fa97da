//! Helpers shared by the replay tests: registering typed closures, a tiny in-memory sidecar
//! that feeds actions back as confirming events, and readers of responses.
// Not every test file uses every helper; helpers unwrap because a failed unwrap is a
// failed test.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::future::Future;

use chrono::{DateTime, TimeZone, Utc};
use durable::proto::history_event::EventType;
use durable::proto::orchestrator_action::OrchestratorActionType;
use durable::proto::{self, HistoryEvent, OrchestrationStatus};
use durable::{OrchestrationContext, Registry};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The time the simulated sidecar starts at.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

pub fn ts(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

pub fn to_time(ts: &prost_types::Timestamp) -> DateTime<Utc> {
    Utc.timestamp_opt(ts.seconds, ts.nanos as u32).unwrap()
}

/// Registers a typed closure as the orchestrator `name` in `registry`.
pub fn add<I, O, F, Fut>(registry: &mut Registry, name: &str, body: F)
where
    I: DeserializeOwned + 'static,
    O: Serialize + 'static,
    F: Fn(OrchestrationContext, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = durable::Result<O>> + 'static,
{
    let body = std::sync::Arc::new(body);
    registry
        .add_orchestrator_fn(name, move |ctx, input| {
            let body = body.clone();
            Box::pin(async move {
                let input: I = serde_json::from_str(input.as_deref().unwrap_or("null"))
                    .map_err(durable::Error::from)?;
                let output = body(ctx, input).await?;
                Ok(Some(
                    serde_json::to_string(&output).map_err(durable::Error::from)?,
                ))
            })
        })
        .unwrap();
}

/// A registry holding only the orchestrator `name`.
pub fn registry<I, O, F, Fut>(name: &str, body: F) -> Registry
where
    I: DeserializeOwned + 'static,
    O: Serialize + 'static,
    F: Fn(OrchestrationContext, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = durable::Result<O>> + 'static,
{
    let mut registry = Registry::new();
    add(&mut registry, name, body);
    registry
}

pub fn event(event_id: i32, time: DateTime<Utc>, event_type: EventType) -> HistoryEvent {
    HistoryEvent {
        event_id,
        timestamp: Some(ts(time)),
        event_type: Some(event_type),
    }
}

/// The history events a sidecar appends to confirm `actions` (protocol.md §3.3).
pub fn confirmations(
    actions: &[proto::OrchestratorAction],
    now: DateTime<Utc>,
) -> Vec<HistoryEvent> {
    actions
        .iter()
        .filter_map(|action| {
            let kind = match action.orchestrator_action_type.as_ref()? {
                OrchestratorActionType::ScheduleTask(a) => {
                    EventType::TaskScheduled(proto::TaskScheduledEvent {
                        name: a.name.clone(),
                        version: a.version.clone(),
                        input: a.input.clone(),
                        ..Default::default()
                    })
                }
                OrchestratorActionType::CreateTimer(a) => {
                    EventType::TimerCreated(proto::TimerCreatedEvent { fire_at: a.fire_at })
                }
                OrchestratorActionType::CreateSubOrchestration(a) => {
                    EventType::SubOrchestrationInstanceCreated(
                        proto::SubOrchestrationInstanceCreatedEvent {
                            instance_id: a.instance_id.clone(),
                            name: a.name.clone(),
                            version: a.version.clone(),
                            input: a.input.clone(),
                            ..Default::default()
                        },
                    )
                }
                OrchestratorActionType::SendEvent(a) => {
                    EventType::EventSent(proto::EventSentEvent {
                        instance_id: a
                            .instance
                            .as_ref()
                            .map(|i| i.instance_id.clone())
                            .unwrap_or_default(),
                        name: a.name.clone(),
                        input: a.data.clone(),
                    })
                }
                OrchestratorActionType::SendEntityMessage(m) => {
                    use proto::send_entity_message_action::EntityMessageType as M;
                    match m.entity_message_type.clone()? {
                        M::EntityOperationSignaled(e) => EventType::EntityOperationSignaled(e),
                        M::EntityOperationCalled(e) => EventType::EntityOperationCalled(e),
                        M::EntityLockRequested(e) => EventType::EntityLockRequested(e),
                        M::EntityUnlockSent(e) => EventType::EntityUnlockSent(e),
                    }
                }
                OrchestratorActionType::CompleteOrchestration(a)
                    if a.orchestration_status() != OrchestrationStatus::ContinuedAsNew =>
                {
                    EventType::ExecutionCompleted(proto::ExecutionCompletedEvent {
                        orchestration_status: a.orchestration_status,
                        result: a.result.clone(),
                        failure_details: a.failure_details.clone(),
                    })
                }
                _ => return None,
            };
            Some(event(action.id, now, kind))
        })
        .collect()
}

/// The request id of the entity call (or critical section id of the lock request) with
/// action id `id` in a response.
pub fn entity_request_id(response: &proto::OrchestratorResponse, id: i32) -> String {
    use proto::send_entity_message_action::EntityMessageType as M;
    response
        .actions
        .iter()
        .find(|a| a.id == id)
        .and_then(|a| match a.orchestrator_action_type.as_ref()? {
            OrchestratorActionType::SendEntityMessage(m) => match m.entity_message_type.as_ref()? {
                M::EntityOperationCalled(c) => Some(c.request_id.clone()),
                M::EntityOperationSignaled(s) => Some(s.request_id.clone()),
                M::EntityLockRequested(l) => Some(l.critical_section_id.clone()),
                M::EntityUnlockSent(u) => Some(u.critical_section_id.clone()),
            },
            _ => None,
        })
        .unwrap_or_else(|| panic!("no entity action {id} in {response:?}"))
}

pub fn entity_completed(request_id: &str, output: &str) -> EventType {
    EventType::EntityOperationCompleted(proto::EntityOperationCompletedEvent {
        request_id: request_id.to_owned(),
        output: Some(output.to_owned()),
    })
}

pub fn entity_failed(request_id: &str, error_type: &str, message: &str) -> EventType {
    EventType::EntityOperationFailed(proto::EntityOperationFailedEvent {
        request_id: request_id.to_owned(),
        failure_details: Some(proto::TaskFailureDetails {
            error_type: error_type.to_owned(),
            error_message: message.to_owned(),
            ..Default::default()
        }),
    })
}

pub fn lock_granted(critical_section_id: &str) -> EventType {
    EventType::EntityLockGranted(proto::EntityLockGrantedEvent {
        critical_section_id: critical_section_id.to_owned(),
    })
}

/// A minimal sidecar: keeps one instance's history, runs episodes and appends the confirming
/// events of the returned actions.
pub struct Sim {
    pub registry: Registry,
    pub instance_id: String,
    pub history: Vec<HistoryEvent>,
    pub now: DateTime<Utc>,
    pub last: Option<proto::OrchestratorResponse>,
}

impl Sim {
    pub fn new(registry: Registry) -> Self {
        Self {
            registry,
            instance_id: "inst-1".to_owned(),
            history: Vec::new(),
            now: t0(),
            last: None,
        }
    }

    /// First episode: starts orchestrator `name` with JSON `input`.
    pub fn start(&mut self, name: &str, input: &str) -> proto::OrchestratorResponse {
        let started = event(
            -1,
            self.now,
            EventType::ExecutionStarted(proto::ExecutionStartedEvent {
                name: name.to_owned(),
                input: Some(input.to_owned()),
                orchestration_instance: Some(proto::OrchestrationInstance {
                    instance_id: self.instance_id.clone(),
                    execution_id: Some("exec-1".to_owned()),
                }),
                ..Default::default()
            }),
        );
        self.run(vec![started], false)
    }

    /// Runs an episode with `new` events (an OrchestratorStarted one second later goes first).
    pub fn episode(&mut self, new: Vec<EventType>) -> proto::OrchestratorResponse {
        self.now += chrono::Duration::seconds(1);
        let new = new.into_iter().map(|e| event(-1, self.now, e)).collect();
        self.run(new, true)
    }

    /// Runs an episode at a given time.
    pub fn episode_at(
        &mut self,
        time: DateTime<Utc>,
        new: Vec<EventType>,
    ) -> proto::OrchestratorResponse {
        self.now = time;
        let new = new.into_iter().map(|e| event(-1, self.now, e)).collect();
        self.run(new, true)
    }

    fn run(&mut self, new: Vec<HistoryEvent>, _advance: bool) -> proto::OrchestratorResponse {
        let mut new_events = vec![event(
            -1,
            self.now,
            EventType::OrchestratorStarted(proto::OrchestratorStartedEvent {}),
        )];
        new_events.extend(new);
        let request = proto::OrchestratorRequest {
            instance_id: self.instance_id.clone(),
            execution_id: Some("exec-1".to_owned()),
            past_events: self.history.clone(),
            new_events: new_events.clone(),
            ..Default::default()
        };
        let response = durable::orchestration::execute(&self.registry, &request);
        self.history.extend(new_events);
        self.history
            .extend(confirmations(&response.actions, self.now));
        // Replaying everything that is now committed must agree with history: no new actions.
        let replay = proto::OrchestratorRequest {
            past_events: self.history.clone(),
            new_events: vec![event(
                -1,
                self.now,
                EventType::OrchestratorStarted(proto::OrchestratorStartedEvent {}),
            )],
            ..request
        };
        let again = durable::orchestration::execute(&self.registry, &replay);
        let finished = completion(&response).is_some();
        if !finished {
            assert!(
                again.actions.is_empty(),
                "replaying the committed history produced actions: {:?}",
                again.actions
            );
        }
        self.last = Some(response.clone());
        response
    }

    /// The fire time the history recorded for timer `id`.
    pub fn timer_fire_at(&self, id: i32) -> DateTime<Utc> {
        self.history
            .iter()
            .find_map(|e| match &e.event_type {
                Some(EventType::TimerCreated(t)) if e.event_id == id => {
                    Some(to_time(t.fire_at.as_ref().unwrap()))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no timer {id} in history"))
    }

    /// Fires timer `id` in an episode at its fire time.
    pub fn fire_timer(&mut self, id: i32) -> proto::OrchestratorResponse {
        let at = self.timer_fire_at(id);
        let time = at.max(self.now + chrono::Duration::seconds(1));
        self.episode_at(time, vec![timer_fired(id, at)])
    }
}

pub fn task_completed(id: i32, result: &str) -> EventType {
    EventType::TaskCompleted(proto::TaskCompletedEvent {
        task_scheduled_id: id,
        result: Some(result.to_owned()),
    })
}

pub fn task_failed(id: i32, error_type: &str, message: &str) -> EventType {
    EventType::TaskFailed(proto::TaskFailedEvent {
        task_scheduled_id: id,
        failure_details: Some(proto::TaskFailureDetails {
            error_type: error_type.to_owned(),
            error_message: message.to_owned(),
            ..Default::default()
        }),
    })
}

pub fn timer_fired(id: i32, at: DateTime<Utc>) -> EventType {
    EventType::TimerFired(proto::TimerFiredEvent {
        fire_at: Some(ts(at)),
        timer_id: id,
    })
}

pub fn raised(name: &str, data: &str) -> EventType {
    EventType::EventRaised(proto::EventRaisedEvent {
        name: name.to_owned(),
        input: Some(data.to_owned()),
    })
}

pub fn sub_completed(id: i32, result: &str) -> EventType {
    EventType::SubOrchestrationInstanceCompleted(proto::SubOrchestrationInstanceCompletedEvent {
        task_scheduled_id: id,
        result: Some(result.to_owned()),
    })
}

pub fn sub_failed(id: i32, error_type: &str, message: &str) -> EventType {
    EventType::SubOrchestrationInstanceFailed(proto::SubOrchestrationInstanceFailedEvent {
        task_scheduled_id: id,
        failure_details: Some(proto::TaskFailureDetails {
            error_type: error_type.to_owned(),
            error_message: message.to_owned(),
            ..Default::default()
        }),
    })
}

pub fn suspended() -> EventType {
    EventType::ExecutionSuspended(proto::ExecutionSuspendedEvent { input: None })
}

pub fn resumed() -> EventType {
    EventType::ExecutionResumed(proto::ExecutionResumedEvent { input: None })
}

pub fn terminated(output: &str) -> EventType {
    EventType::ExecutionTerminated(proto::ExecutionTerminatedEvent {
        input: Some(output.to_owned()),
        recurse: false,
    })
}

/// One action in a compact, comparable form: (id, kind, name or target, input or fire time).
pub fn summary(response: &proto::OrchestratorResponse) -> Vec<(i32, &'static str, String)> {
    response
        .actions
        .iter()
        .map(|a| {
            let (kind, name) = match a.orchestrator_action_type.as_ref().unwrap() {
                OrchestratorActionType::ScheduleTask(t) => ("activity", t.name.clone()),
                OrchestratorActionType::CreateSubOrchestration(s) => {
                    ("sub", format!("{}@{}", s.name, s.instance_id))
                }
                OrchestratorActionType::CreateTimer(t) => {
                    ("timer", to_time(t.fire_at.as_ref().unwrap()).to_rfc3339())
                }
                OrchestratorActionType::SendEvent(e) => (
                    "send",
                    format!("{}/{}", e.instance.as_ref().unwrap().instance_id, e.name),
                ),
                OrchestratorActionType::CompleteOrchestration(c) => {
                    ("complete", format!("{:?}", c.orchestration_status()))
                }
                OrchestratorActionType::TerminateOrchestration(t) => {
                    ("terminate", t.instance_id.clone())
                }
                OrchestratorActionType::SendEntityMessage(m) => {
                    use proto::send_entity_message_action::EntityMessageType as M;
                    match m.entity_message_type.as_ref().unwrap() {
                        M::EntityOperationSignaled(e) => (
                            "signal",
                            format!(
                                "{}/{}",
                                e.target_instance_id.as_deref().unwrap(),
                                e.operation
                            ),
                        ),
                        M::EntityOperationCalled(e) => (
                            "call",
                            format!(
                                "{}/{}",
                                e.target_instance_id.as_deref().unwrap(),
                                e.operation
                            ),
                        ),
                        M::EntityLockRequested(e) => ("lock", e.lock_set.join(",")),
                        M::EntityUnlockSent(e) => ("unlock", e.target_instance_id.clone().unwrap()),
                    }
                }
                OrchestratorActionType::RewindOrchestration(_) => ("rewind", String::new()),
            };
            (a.id, kind, name)
        })
        .collect()
}

/// The inputs of the ScheduleTask actions, in order.
pub fn activity_inputs(response: &proto::OrchestratorResponse) -> Vec<String> {
    response
        .actions
        .iter()
        .filter_map(|a| match a.orchestrator_action_type.as_ref()? {
            OrchestratorActionType::ScheduleTask(t) => Some(t.input.clone().unwrap_or_default()),
            _ => None,
        })
        .collect()
}

/// The completion action, if the orchestration finished in this episode.
pub fn completion(
    response: &proto::OrchestratorResponse,
) -> Option<&proto::CompleteOrchestrationAction> {
    response
        .actions
        .iter()
        .find_map(|a| match a.orchestrator_action_type.as_ref()? {
            OrchestratorActionType::CompleteOrchestration(c) => Some(c),
            _ => None,
        })
}

/// Asserts the orchestration COMPLETED and returns its JSON output.
#[track_caller]
pub fn output(response: &proto::OrchestratorResponse) -> String {
    let c = completion(response).unwrap_or_else(|| panic!("not completed: {response:?}"));
    assert_eq!(
        c.orchestration_status(),
        OrchestrationStatus::Completed,
        "{:?}",
        c.failure_details
    );
    c.result.clone().unwrap_or_default()
}

/// Asserts the orchestration FAILED and returns its failure.
#[track_caller]
pub fn failure(response: &proto::OrchestratorResponse) -> proto::TaskFailureDetails {
    let c = completion(response).unwrap_or_else(|| panic!("not completed: {response:?}"));
    assert_eq!(
        c.orchestration_status(),
        OrchestrationStatus::Failed,
        "{c:?}"
    );
    c.failure_details.clone().unwrap()
}

/// Asserts a nondeterminism failure and returns its message.
#[track_caller]
pub fn nondeterminism(response: &proto::OrchestratorResponse) -> String {
    let f = failure(response);
    assert_eq!(f.error_type, "durable::NonDeterminismError", "{f:?}");
    assert!(f.is_non_retriable);
    f.error_message
}
