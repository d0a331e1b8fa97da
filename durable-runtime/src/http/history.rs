//! History events as JSON, for `GET /api/instances/{id}/history`.
//!
//! One flat object per event: `eventId`, `timestamp`, `eventType` (the wire's event name without
//! the `Event` suffix, as Durable Functions' `showHistory` names them) and the fields of that
//! event, camelCase, payloads parsed as JSON. Completions carry the `taskScheduledId` (timers:
//! `timerId`) of the event they complete, so a client can pair them into spans.

use serde_json::{Map, Value, json};

use super::model::{payload, rfc3339, status_name};
use crate::proto::{self, history_event::EventType};

/// The JSON object of one history event.
pub(crate) fn event_json(event: &proto::HistoryEvent) -> Value {
    let (kind, fields) = match &event.event_type {
        Some(kind) => describe(kind),
        None => ("Unknown", json!({})),
    };
    let mut out = Map::new();
    out.insert("eventId".into(), event.event_id.into());
    out.insert("timestamp".into(), rfc3339(event.timestamp.as_ref()).into());
    out.insert("eventType".into(), kind.into());
    if let Value::Object(fields) = fields {
        out.extend(fields);
    }
    Value::Object(out)
}

/// The event's name and its own fields.
fn describe(kind: &EventType) -> (&'static str, Value) {
    let p = |raw: &Option<String>| payload(raw.as_deref());
    match kind {
        EventType::ExecutionStarted(e) => (
            "ExecutionStarted",
            json!({
                "name": e.name,
                "version": e.version,
                "input": p(&e.input),
                "parentInstanceId": e.parent_instance.as_ref()
                    .and_then(|parent| parent.orchestration_instance.as_ref())
                    .map(|instance| instance.instance_id.clone()),
                "scheduledStartTimestamp": rfc3339(e.scheduled_start_timestamp.as_ref()),
                "tags": e.tags,
            }),
        ),
        EventType::ExecutionCompleted(e) => (
            "ExecutionCompleted",
            json!({
                "runtimeStatus": status_name(e.orchestration_status),
                "result": p(&e.result),
                "failureDetails": failure(e.failure_details.as_ref()),
            }),
        ),
        EventType::ExecutionTerminated(e) => (
            "ExecutionTerminated",
            json!({ "input": p(&e.input), "recurse": e.recurse }),
        ),
        EventType::TaskScheduled(e) => (
            "TaskScheduled",
            json!({
                "name": e.name,
                "version": e.version,
                "input": p(&e.input),
                "tags": e.tags,
            }),
        ),
        EventType::TaskCompleted(e) => (
            "TaskCompleted",
            json!({ "taskScheduledId": e.task_scheduled_id, "result": p(&e.result) }),
        ),
        EventType::TaskFailed(e) => (
            "TaskFailed",
            json!({
                "taskScheduledId": e.task_scheduled_id,
                "failureDetails": failure(e.failure_details.as_ref()),
            }),
        ),
        EventType::SubOrchestrationInstanceCreated(e) => (
            "SubOrchestrationInstanceCreated",
            json!({
                "instanceId": e.instance_id,
                "name": e.name,
                "version": e.version,
                "input": p(&e.input),
                "tags": e.tags,
            }),
        ),
        EventType::SubOrchestrationInstanceCompleted(e) => (
            "SubOrchestrationInstanceCompleted",
            json!({ "taskScheduledId": e.task_scheduled_id, "result": p(&e.result) }),
        ),
        EventType::SubOrchestrationInstanceFailed(e) => (
            "SubOrchestrationInstanceFailed",
            json!({
                "taskScheduledId": e.task_scheduled_id,
                "failureDetails": failure(e.failure_details.as_ref()),
            }),
        ),
        EventType::TimerCreated(e) => (
            "TimerCreated",
            json!({ "fireAt": rfc3339(e.fire_at.as_ref()) }),
        ),
        EventType::TimerFired(e) => (
            "TimerFired",
            json!({ "timerId": e.timer_id, "fireAt": rfc3339(e.fire_at.as_ref()) }),
        ),
        EventType::OrchestratorStarted(_) => ("OrchestratorStarted", json!({})),
        EventType::OrchestratorCompleted(_) => ("OrchestratorCompleted", json!({})),
        EventType::EventSent(e) => (
            "EventSent",
            json!({ "instanceId": e.instance_id, "name": e.name, "input": p(&e.input) }),
        ),
        EventType::EventRaised(e) => (
            "EventRaised",
            json!({ "name": e.name, "input": p(&e.input) }),
        ),
        EventType::GenericEvent(e) => ("GenericEvent", json!({ "data": p(&e.data) })),
        EventType::HistoryState(e) => (
            "HistoryState",
            json!({
                "runtimeStatus": e.orchestration_state.as_ref()
                    .map(|s| status_name(s.orchestration_status)),
            }),
        ),
        EventType::ContinueAsNew(e) => ("ContinueAsNew", json!({ "input": p(&e.input) })),
        EventType::ExecutionSuspended(e) => ("ExecutionSuspended", json!({ "input": p(&e.input) })),
        EventType::ExecutionResumed(e) => ("ExecutionResumed", json!({ "input": p(&e.input) })),
        EventType::EntityOperationSignaled(e) => (
            "EntityOperationSignaled",
            json!({
                "requestId": e.request_id,
                "operation": e.operation,
                "input": p(&e.input),
                "targetInstanceId": e.target_instance_id,
                "scheduledTime": rfc3339(e.scheduled_time.as_ref()),
            }),
        ),
        EventType::EntityOperationCalled(e) => (
            "EntityOperationCalled",
            json!({
                "requestId": e.request_id,
                "operation": e.operation,
                "input": p(&e.input),
                "targetInstanceId": e.target_instance_id,
                "scheduledTime": rfc3339(e.scheduled_time.as_ref()),
            }),
        ),
        EventType::EntityOperationCompleted(e) => (
            "EntityOperationCompleted",
            json!({ "requestId": e.request_id, "output": p(&e.output) }),
        ),
        EventType::EntityOperationFailed(e) => (
            "EntityOperationFailed",
            json!({
                "requestId": e.request_id,
                "failureDetails": failure(e.failure_details.as_ref()),
            }),
        ),
        EventType::EntityLockRequested(e) => (
            "EntityLockRequested",
            json!({
                "criticalSectionId": e.critical_section_id,
                "lockSet": e.lock_set,
                "position": e.position,
            }),
        ),
        EventType::EntityLockGranted(e) => (
            "EntityLockGranted",
            json!({ "criticalSectionId": e.critical_section_id }),
        ),
        EventType::EntityUnlockSent(e) => (
            "EntityUnlockSent",
            json!({
                "criticalSectionId": e.critical_section_id,
                "targetInstanceId": e.target_instance_id,
            }),
        ),
        EventType::ExecutionRewound(e) => ("ExecutionRewound", json!({ "reason": e.reason })),
    }
}

/// `failureDetails` of a task or execution, with the chain of inner failures.
fn failure(details: Option<&proto::TaskFailureDetails>) -> Value {
    match details {
        None => Value::Null,
        Some(f) => json!({
            "errorType": f.error_type,
            "errorMessage": f.error_message,
            "stackTrace": f.stack_trace,
            "isNonRetriable": f.is_non_retriable,
            "innerFailure": failure(f.inner_failure.as_deref()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(event_id: i32, kind: EventType) -> proto::HistoryEvent {
        proto::HistoryEvent {
            event_id,
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            event_type: Some(kind),
        }
    }

    #[test]
    fn events_are_flat_camel_case_objects() {
        let scheduled = event_json(&at(
            3,
            EventType::TaskScheduled(proto::TaskScheduledEvent {
                name: "charge".into(),
                input: Some("{\"amount\":5}".into()),
                ..Default::default()
            }),
        ));
        assert_eq!(scheduled["eventId"], 3);
        assert_eq!(scheduled["eventType"], "TaskScheduled");
        assert_eq!(scheduled["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(scheduled["name"], "charge");
        assert_eq!(scheduled["input"], json!({"amount": 5}));

        let failed = event_json(&at(
            -1,
            EventType::TaskFailed(proto::TaskFailedEvent {
                task_scheduled_id: 3,
                failure_details: Some(proto::TaskFailureDetails {
                    error_type: "Declined".into(),
                    error_message: "card declined".into(),
                    ..Default::default()
                }),
            }),
        ));
        assert_eq!(failed["taskScheduledId"], 3);
        assert_eq!(failed["failureDetails"]["errorMessage"], "card declined");
        assert_eq!(failed["failureDetails"]["innerFailure"], Value::Null);

        let fired = event_json(&at(
            -1,
            EventType::TimerFired(proto::TimerFiredEvent {
                timer_id: 4,
                fire_at: None,
            }),
        ));
        assert_eq!(fired["timerId"], 4);
        assert_eq!(fired["fireAt"], Value::Null);
    }

    #[test]
    fn an_event_without_a_type_is_unknown() {
        let event = event_json(&proto::HistoryEvent::default());
        assert_eq!(event["eventType"], "Unknown");
        assert_eq!(event["timestamp"], Value::Null);
    }
}
