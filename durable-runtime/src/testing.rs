//! Tools for testing orchestrators without a sidecar: build histories, run episodes.
//!
//! ```
//! use durable::testing::HistoryBuilder;
//!
//! let mut history = HistoryBuilder::new("order-1");
//! history
//!     .orchestrator_started()
//!     .execution_started("sequence", "null")
//!     .task_scheduled(0, "hello")
//!     .task_completed(0, "\"Hello Tokyo!\"");
//! let request = history.request_replaying_all_but(2);
//! assert_eq!(request.past_events.len(), 2);
//! assert_eq!(request.new_events.len(), 2);
//! ```

use chrono::{DateTime, TimeZone, Utc};

use crate::convert::to_timestamp;
use crate::error::FailureDetails;
use crate::proto::history_event::EventType;
use crate::proto::{self, HistoryEvent};

/// Builds readable histories for replay tests. Time starts at 2024-01-01T00:00:00Z and each
/// [`orchestrator_started`](Self::orchestrator_started) advances it by one second (or sets it
/// with [`orchestrator_started_at`](Self::orchestrator_started_at)).
#[derive(Clone, Debug)]
pub struct HistoryBuilder {
    instance_id: String,
    execution_id: String,
    now: DateTime<Utc>,
    events: Vec<HistoryEvent>,
}

impl HistoryBuilder {
    /// An empty history of the instance `instance_id`.
    pub fn new(instance_id: impl Into<String>) -> Self {
        Self {
            instance_id: instance_id.into(),
            execution_id: "exec-1".to_owned(),
            now: Utc
                .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
                .single()
                .expect("a valid date"),
            events: Vec::new(),
        }
    }

    /// The time of the latest episode start.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// The events so far.
    pub fn events(&self) -> &[HistoryEvent] {
        &self.events
    }

    /// Appends a raw event.
    pub fn push(&mut self, event_id: i32, event_type: EventType) -> &mut Self {
        self.events.push(HistoryEvent {
            event_id,
            timestamp: Some(to_timestamp(self.now)),
            event_type: Some(event_type),
        });
        self
    }

    /// An episode start one second after the previous one.
    pub fn orchestrator_started(&mut self) -> &mut Self {
        let next = if self.events.is_empty() {
            self.now
        } else {
            self.now + chrono::Duration::seconds(1)
        };
        self.orchestrator_started_at(next)
    }

    /// An episode start at `time` (the orchestration's current time from here on).
    pub fn orchestrator_started_at(&mut self, time: DateTime<Utc>) -> &mut Self {
        self.now = time;
        self.push(
            -1,
            EventType::OrchestratorStarted(proto::OrchestratorStartedEvent {}),
        )
    }

    /// The execution's start: orchestrator `name` with JSON `input`.
    pub fn execution_started(&mut self, name: &str, input: &str) -> &mut Self {
        self.execution_started_versioned(name, input, None)
    }

    /// The execution's start with a version.
    pub fn execution_started_versioned(
        &mut self,
        name: &str,
        input: &str,
        version: Option<&str>,
    ) -> &mut Self {
        let event = proto::ExecutionStartedEvent {
            name: name.to_owned(),
            version: version.map(str::to_owned),
            input: Some(input.to_owned()),
            orchestration_instance: Some(proto::OrchestrationInstance {
                instance_id: self.instance_id.clone(),
                execution_id: Some(self.execution_id.clone()),
            }),
            ..Default::default()
        };
        self.push(-1, EventType::ExecutionStarted(event))
    }

    /// History confirms activity `name` scheduled with id `id`.
    pub fn task_scheduled(&mut self, id: i32, name: &str) -> &mut Self {
        self.push(
            id,
            EventType::TaskScheduled(proto::TaskScheduledEvent {
                name: name.to_owned(),
                ..Default::default()
            }),
        )
    }

    /// Activity `id` completed with JSON `result`.
    pub fn task_completed(&mut self, id: i32, result: &str) -> &mut Self {
        self.push(
            -1,
            EventType::TaskCompleted(proto::TaskCompletedEvent {
                task_scheduled_id: id,
                result: Some(result.to_owned()),
            }),
        )
    }

    /// Activity `id` failed.
    pub fn task_failed(&mut self, id: i32, error_type: &str, message: &str) -> &mut Self {
        let details = FailureDetails::new(error_type, message);
        self.push(
            -1,
            EventType::TaskFailed(proto::TaskFailedEvent {
                task_scheduled_id: id,
                failure_details: Some((&details).into()),
            }),
        )
    }

    /// History confirms a timer `id` firing at `fire_at`.
    pub fn timer_created(&mut self, id: i32, fire_at: DateTime<Utc>) -> &mut Self {
        self.push(
            id,
            EventType::TimerCreated(proto::TimerCreatedEvent {
                fire_at: Some(to_timestamp(fire_at)),
            }),
        )
    }

    /// Timer `id` fired.
    pub fn timer_fired(&mut self, id: i32, fire_at: DateTime<Utc>) -> &mut Self {
        self.push(
            -1,
            EventType::TimerFired(proto::TimerFiredEvent {
                fire_at: Some(to_timestamp(fire_at)),
                timer_id: id,
            }),
        )
    }

    /// History confirms sub-orchestration `name` started as `instance_id` with id `id`.
    pub fn sub_orchestration_created(
        &mut self,
        id: i32,
        name: &str,
        instance_id: &str,
    ) -> &mut Self {
        self.push(
            id,
            EventType::SubOrchestrationInstanceCreated(
                proto::SubOrchestrationInstanceCreatedEvent {
                    instance_id: instance_id.to_owned(),
                    name: name.to_owned(),
                    ..Default::default()
                },
            ),
        )
    }

    /// Sub-orchestration `id` completed with JSON `result`.
    pub fn sub_orchestration_completed(&mut self, id: i32, result: &str) -> &mut Self {
        self.push(
            -1,
            EventType::SubOrchestrationInstanceCompleted(
                proto::SubOrchestrationInstanceCompletedEvent {
                    task_scheduled_id: id,
                    result: Some(result.to_owned()),
                },
            ),
        )
    }

    /// Sub-orchestration `id` failed.
    pub fn sub_orchestration_failed(
        &mut self,
        id: i32,
        error_type: &str,
        message: &str,
    ) -> &mut Self {
        let details = FailureDetails::new(error_type, message);
        self.push(
            -1,
            EventType::SubOrchestrationInstanceFailed(proto::SubOrchestrationInstanceFailedEvent {
                task_scheduled_id: id,
                failure_details: Some((&details).into()),
            }),
        )
    }

    /// History confirms an event sent to `instance_id` with id `id`.
    pub fn event_sent(&mut self, id: i32, instance_id: &str, name: &str) -> &mut Self {
        self.push(
            id,
            EventType::EventSent(proto::EventSentEvent {
                instance_id: instance_id.to_owned(),
                name: name.to_owned(),
                input: None,
            }),
        )
    }

    /// An external event `name` with JSON `data` arrived.
    pub fn event_raised(&mut self, name: &str, data: &str) -> &mut Self {
        self.push(
            -1,
            EventType::EventRaised(proto::EventRaisedEvent {
                name: name.to_owned(),
                input: Some(data.to_owned()),
            }),
        )
    }

    /// The instance was suspended.
    pub fn suspended(&mut self) -> &mut Self {
        self.push(
            -1,
            EventType::ExecutionSuspended(proto::ExecutionSuspendedEvent { input: None }),
        )
    }

    /// The instance was resumed.
    pub fn resumed(&mut self) -> &mut Self {
        self.push(
            -1,
            EventType::ExecutionResumed(proto::ExecutionResumedEvent { input: None }),
        )
    }

    /// The instance was terminated with JSON `output`.
    pub fn terminated(&mut self, output: &str) -> &mut Self {
        self.push(
            -1,
            EventType::ExecutionTerminated(proto::ExecutionTerminatedEvent {
                input: Some(output.to_owned()),
                recurse: false,
            }),
        )
    }

    /// History confirms a signal (action `id`) of `operation` to entity `target`.
    pub fn entity_signaled(&mut self, id: i32, target: &str, operation: &str) -> &mut Self {
        self.push(
            id,
            EventType::EntityOperationSignaled(proto::EntityOperationSignaledEvent {
                target_instance_id: Some(target.to_owned()),
                operation: operation.to_owned(),
                ..Default::default()
            }),
        )
    }

    /// History confirms a call (action `id`, request `request_id`) of `operation` on `target`.
    pub fn entity_called(
        &mut self,
        id: i32,
        target: &str,
        operation: &str,
        request_id: &str,
    ) -> &mut Self {
        self.push(
            id,
            EventType::EntityOperationCalled(proto::EntityOperationCalledEvent {
                request_id: request_id.to_owned(),
                target_instance_id: Some(target.to_owned()),
                operation: operation.to_owned(),
                parent_instance_id: Some(self.instance_id.clone()),
                ..Default::default()
            }),
        )
    }

    /// The call `request_id` returned JSON `output`.
    pub fn entity_completed(&mut self, request_id: &str, output: &str) -> &mut Self {
        self.push(
            -1,
            EventType::EntityOperationCompleted(proto::EntityOperationCompletedEvent {
                request_id: request_id.to_owned(),
                output: Some(output.to_owned()),
            }),
        )
    }

    /// The call `request_id` failed.
    pub fn entity_failed(
        &mut self,
        request_id: &str,
        error_type: &str,
        message: &str,
    ) -> &mut Self {
        let details = FailureDetails::new(error_type, message);
        self.push(
            -1,
            EventType::EntityOperationFailed(proto::EntityOperationFailedEvent {
                request_id: request_id.to_owned(),
                failure_details: Some((&details).into()),
            }),
        )
    }

    /// History confirms a lock request (action `id`) of critical section `section` over
    /// `lock_set` (sorted entity ids).
    pub fn lock_requested(&mut self, id: i32, section: &str, lock_set: &[&str]) -> &mut Self {
        self.push(
            id,
            EventType::EntityLockRequested(proto::EntityLockRequestedEvent {
                critical_section_id: section.to_owned(),
                lock_set: lock_set.iter().map(|s| (*s).to_owned()).collect(),
                position: 0,
                parent_instance_id: Some(self.instance_id.clone()),
            }),
        )
    }

    /// Every lock of critical section `section` was granted.
    pub fn lock_granted(&mut self, section: &str) -> &mut Self {
        self.push(
            -1,
            EventType::EntityLockGranted(proto::EntityLockGrantedEvent {
                critical_section_id: section.to_owned(),
            }),
        )
    }

    /// History confirms the release (action `id`) of `target` by critical section `section`.
    pub fn unlock_sent(&mut self, id: i32, section: &str, target: &str) -> &mut Self {
        self.push(
            id,
            EventType::EntityUnlockSent(proto::EntityUnlockSentEvent {
                critical_section_id: section.to_owned(),
                parent_instance_id: Some(self.instance_id.clone()),
                target_instance_id: Some(target.to_owned()),
            }),
        )
    }

    /// A request with every event new (a first episode).
    pub fn request_all_new(&self) -> proto::OrchestratorRequest {
        self.request_replaying_all_but(self.events.len())
    }

    /// A request whose last `new` events are new and the rest past (replayed).
    pub fn request_replaying_all_but(&self, new: usize) -> proto::OrchestratorRequest {
        let split = self.events.len().saturating_sub(new);
        proto::OrchestratorRequest {
            instance_id: self.instance_id.clone(),
            execution_id: Some(self.execution_id.clone()),
            past_events: self.events[..split].to_vec(),
            new_events: self.events[split..].to_vec(),
            ..Default::default()
        }
    }
}
