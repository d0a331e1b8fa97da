//! The spans of one orchestration episode: the episode itself, and one for each timer,
//! activity, sub-orchestration and event whose completion the episode receives.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use opentelemetry::trace::{
    Span, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer,
};
use opentelemetry::{Context, KeyValue, global};

use super::context::{span_context, trace_context};
use super::{FIRE_AT, STATUS, TASK_ID, TRACER, span_name, task_attributes};
use crate::proto::history_event::EventType;
use crate::proto::orchestrator_action::OrchestratorActionType;
use crate::proto::{self, HistoryEvent, OrchestrationStatus};

/// The events that scheduled the tasks of an execution still waiting for an answer, by task
/// id, kept between episodes by a worker that continues the execution's replay state (its
/// next episode gets only the history after what it applied, so the scheduling events of
/// answers it receives may not be in it). Inputs are left out.
#[derive(Default)]
pub(crate) struct Origins(HashMap<i32, HistoryEvent>);

impl Origins {
    /// Records the scheduling events `request` brings and forgets the answered tasks.
    fn note(&mut self, request: &proto::OrchestratorRequest) {
        for event in request.past_events.iter().chain(&request.new_events) {
            if is_scheduling(event) {
                let mut kept = event.clone();
                match kept.event_type.as_mut() {
                    Some(EventType::TaskScheduled(s)) => s.input = None,
                    Some(EventType::SubOrchestrationInstanceCreated(s)) => s.input = None,
                    _ => {}
                }
                self.0.insert(event.event_id, kept);
            } else if let Some((id, _)) = answer_of(event) {
                self.0.remove(&id);
            }
        }
    }
}

/// The span of an orchestration episode while it runs.
pub(crate) struct EpisodeTrace {
    span: global::BoxedSpan,
    /// The context the episode's new activities and sub-orchestrations are scheduled with:
    /// the episode span's, or the orchestration's parent when no tracer provider records.
    propagated: Option<proto::TraceContext>,
    name: String,
    instance_id: String,
}

impl EpisodeTrace {
    /// Starts the span of the episode `request` asks for: `orchestration:Name`, a server span
    /// under the trace context the orchestration was started with. An orchestration started
    /// without one gets a trace of its own, derived from its execution id so that every
    /// episode of the execution lands in the same trace. `started`: the execution's
    /// `ExecutionStarted` event.
    pub(crate) fn start(
        request: &proto::OrchestratorRequest,
        started: Option<&proto::ExecutionStartedEvent>,
    ) -> Self {
        let name = started.map(|s| s.name.clone()).unwrap_or_default();
        let version = started.and_then(|s| s.version.as_deref());
        let execution_id = started
            .and_then(|s| s.orchestration_instance.as_ref())
            .and_then(|i| i.execution_id.as_deref())
            .or(request.execution_id.as_deref())
            .unwrap_or_default();
        let remote = started
            .and_then(|s| s.parent_trace_context.as_ref())
            .and_then(span_context)
            .unwrap_or_else(|| execution_trace(&request.instance_id, execution_id));
        let tracer = global::tracer(TRACER);
        let span = tracer
            .span_builder(span_name("orchestration", &name, version))
            .with_kind(SpanKind::Server)
            .with_attributes(task_attributes(
                "orchestration",
                &name,
                version,
                &request.instance_id,
            ))
            .start_with_context(&tracer, &Context::new().with_remote_span_context(remote));
        let propagated = trace_context(span.span_context());
        Self {
            span,
            propagated,
            name,
            instance_id: request.instance_id.clone(),
        }
    }

    /// Gives the episode's new actions their trace context, emits the spans of what the
    /// episode received, and ends the episode's span. `origins`: the execution's unanswered
    /// scheduling events from earlier episodes, when its replay state is kept between
    /// episodes (updated with this one's).
    pub(crate) fn finish(
        mut self,
        request: &proto::OrchestratorRequest,
        response: &mut proto::OrchestratorResponse,
        origins: Option<&mut Origins>,
    ) {
        if let Some(trace) = &self.propagated {
            for action in &mut response.actions {
                if let Some(slot) = trace_slot(action) {
                    slot.get_or_insert_with(|| trace.clone());
                }
            }
        }
        let completion = response
            .actions
            .iter()
            .find_map(|a| match &a.orchestrator_action_type {
                Some(OrchestratorActionType::CompleteOrchestration(done)) => Some(done),
                _ => None,
            });
        if self.span.is_recording() {
            self.emit_received(request, origins.as_deref());
            if let Some(origins) = origins {
                origins.note(request);
            }
            if let Some(done) = completion {
                self.record_completion(done);
            }
        }
        self.span.end();
    }

    fn record_completion(&mut self, done: &proto::CompleteOrchestrationAction) {
        let status = OrchestrationStatus::try_from(done.orchestration_status)
            .unwrap_or(OrchestrationStatus::Completed);
        let label = match status {
            OrchestrationStatus::Failed => "Failed",
            OrchestrationStatus::Terminated => "Terminated",
            OrchestrationStatus::ContinuedAsNew => "ContinuedAsNew",
            _ => "Completed",
        };
        self.span.set_attribute(KeyValue::new(STATUS, label));
        if status == OrchestrationStatus::Failed {
            let message = done
                .failure_details
                .as_ref()
                .map(|f| f.error_message.clone())
                .unwrap_or_default();
            self.span.set_status(Status::error(message));
        }
    }

    /// One span per timer fired, activity and sub-orchestration answered, and event raised in
    /// this episode's new events, from the event that scheduled it to the one that answered.
    fn emit_received(&self, request: &proto::OrchestratorRequest, origins: Option<&Origins>) {
        let answered: HashSet<i32> = request
            .new_events
            .iter()
            .filter_map(|e| answer_of(e).map(|(id, _)| id))
            .collect();
        let has_events = request
            .new_events
            .iter()
            .any(|e| matches!(e.event_type, Some(EventType::EventRaised(_))));
        if answered.is_empty() && !has_events {
            return;
        }
        let mut scheduled: HashMap<i32, &HistoryEvent> = request
            .past_events
            .iter()
            .chain(&request.new_events)
            .filter(|e| answered.contains(&e.event_id) && is_scheduling(e))
            .map(|e| (e.event_id, e))
            .collect();
        if let Some(origins) = origins {
            for id in &answered {
                if let Some(origin) = origins.0.get(id) {
                    scheduled.entry(*id).or_insert(origin);
                }
            }
        }
        let tracer = global::tracer(TRACER);
        let parent = Context::new().with_remote_span_context(self.span.span_context().clone());
        for event in &request.new_events {
            let Some(span) = self.received_span(event, &scheduled) else {
                continue;
            };
            let mut started = tracer
                .span_builder(span.name)
                .with_kind(span.kind)
                .with_start_time(span.start)
                .with_attributes(span.attributes)
                .start_with_context(&tracer, &parent);
            if let Some(message) = span.error {
                started.set_status(Status::error(message));
            }
            started.end_with_timestamp(span.end);
        }
    }

    fn received_span(
        &self,
        event: &HistoryEvent,
        scheduled: &HashMap<i32, &HistoryEvent>,
    ) -> Option<ReceivedSpan> {
        let end = time_of(event);
        if let Some(EventType::EventRaised(raised)) = &event.event_type {
            let attributes = task_attributes("event", &raised.name, None, &self.instance_id);
            return Some(ReceivedSpan {
                name: span_name("orchestration_event", &raised.name, None).into_owned(),
                kind: SpanKind::Consumer,
                start: end,
                end,
                attributes,
                error: None,
            });
        }
        let (id, error) = answer_of(event)?;
        let origin = scheduled.get(&id)?;
        let start = time_of(origin);
        let (name, kind, mut attributes) = match &origin.event_type {
            Some(EventType::TaskScheduled(s)) => (
                span_name("activity", &s.name, s.version.as_deref()).into_owned(),
                SpanKind::Client,
                task_attributes("activity", &s.name, s.version.as_deref(), &self.instance_id),
            ),
            Some(EventType::SubOrchestrationInstanceCreated(s)) => (
                span_name("orchestration", &s.name, s.version.as_deref()).into_owned(),
                SpanKind::Client,
                task_attributes(
                    "orchestration",
                    &s.name,
                    s.version.as_deref(),
                    &s.instance_id,
                ),
            ),
            Some(EventType::TimerCreated(t)) => {
                let mut attributes = task_attributes("timer", &self.name, None, &self.instance_id);
                if let Some(fire_at) = t.fire_at.and_then(|f| SystemTime::try_from(f).ok()) {
                    let fire_at: chrono::DateTime<chrono::Utc> = fire_at.into();
                    attributes.push(KeyValue::new(FIRE_AT, fire_at.to_rfc3339()));
                }
                (
                    format!("orchestration:{}:timer", self.name),
                    SpanKind::Internal,
                    attributes,
                )
            }
            _ => return None,
        };
        attributes.push(KeyValue::new(TASK_ID, i64::from(id)));
        Some(ReceivedSpan {
            name,
            kind,
            start,
            end,
            attributes,
            error,
        })
    }
}

/// A span for something an episode received, ready to emit.
struct ReceivedSpan {
    name: String,
    kind: SpanKind,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
    error: Option<String>,
}

/// The id of the action an event answers, and its failure message if it failed.
fn answer_of(event: &HistoryEvent) -> Option<(i32, Option<String>)> {
    let failure = |d: &Option<proto::TaskFailureDetails>| {
        Some(
            d.as_ref()
                .map_or_else(String::new, |d| d.error_message.clone()),
        )
    };
    match event.event_type.as_ref()? {
        EventType::TaskCompleted(e) => Some((e.task_scheduled_id, None)),
        EventType::TaskFailed(e) => Some((e.task_scheduled_id, failure(&e.failure_details))),
        EventType::SubOrchestrationInstanceCompleted(e) => Some((e.task_scheduled_id, None)),
        EventType::SubOrchestrationInstanceFailed(e) => {
            Some((e.task_scheduled_id, failure(&e.failure_details)))
        }
        EventType::TimerFired(e) => Some((e.timer_id, None)),
        _ => None,
    }
}

fn is_scheduling(event: &HistoryEvent) -> bool {
    matches!(
        event.event_type,
        Some(
            EventType::TaskScheduled(_)
                | EventType::SubOrchestrationInstanceCreated(_)
                | EventType::TimerCreated(_)
        )
    )
}

fn time_of(event: &HistoryEvent) -> SystemTime {
    event
        .timestamp
        .and_then(|t| SystemTime::try_from(t).ok())
        .unwrap_or_else(SystemTime::now)
}

/// The trace of an execution started without trace context: ids derived from the instance
/// and execution ids, so every episode of the execution (on any worker) continues it. Its
/// root is never emitted; the episodes are the trace's top level.
fn execution_trace(instance_id: &str, execution_id: &str) -> SpanContext {
    let key = format!("{instance_id}\n{execution_id}");
    let bytes = *uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes()).as_bytes();
    let mut span = [0u8; 8];
    span.copy_from_slice(&bytes[8..]);
    SpanContext::new(
        TraceId::from_bytes(bytes),
        SpanId::from_bytes(span),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    )
}

/// Where an action carries the trace context it continues in (activities and
/// sub-orchestrations; the other actions have no such field).
fn trace_slot(action: &mut proto::OrchestratorAction) -> Option<&mut Option<proto::TraceContext>> {
    match &mut action.orchestrator_action_type {
        Some(OrchestratorActionType::ScheduleTask(a)) => Some(&mut a.parent_trace_context),
        Some(OrchestratorActionType::CreateSubOrchestration(a)) => {
            Some(&mut a.parent_trace_context)
        }
        _ => None,
    }
}
