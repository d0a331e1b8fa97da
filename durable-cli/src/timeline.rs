//! An instance's history as a readable timeline: one line per event, its time after the first
//! event, and for task completions how long the task took.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use durable::proto::HistoryEvent;
use durable::proto::history_event::EventType;

/// The longest payload shown in a timeline line; longer ones are cut with `…`.
const PAYLOAD_CHARS: usize = 80;

/// The timeline of `events`, one line each.
pub(crate) fn lines(events: &[HistoryEvent]) -> Vec<String> {
    let time = |e: &HistoryEvent| {
        e.timestamp
            .as_ref()
            .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.max(0) as u32))
    };
    let start = events.iter().filter_map(time).min();
    // Scheduling events by id, so completions can say what they complete and how long it took.
    let mut scheduled: HashMap<i32, (String, Option<DateTime<Utc>>)> = HashMap::new();
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let at = time(event);
        let offset = match (at, start) {
            (Some(at), Some(start)) => {
                format!("+{:>8.3}s", (at - start).num_milliseconds() as f64 / 1000.0)
            }
            _ => format!("{:>10}", "?"),
        };
        let took = |id: i32, scheduled: &HashMap<i32, (String, Option<DateTime<Utc>>)>| {
            let (name, since) = scheduled.get(&id).cloned().unwrap_or_default();
            let duration = match (at, since) {
                (Some(at), Some(since)) => format!(
                    " (took {:.3}s)",
                    (at - since).num_milliseconds() as f64 / 1000.0
                ),
                _ => String::new(),
            };
            (name, duration)
        };
        let Some(kind) = &event.event_type else {
            continue;
        };
        let line = match kind {
            EventType::ExecutionStarted(e) => format!(
                "ExecutionStarted    {}{} input {}",
                e.name,
                e.version
                    .as_deref()
                    .filter(|v| !v.is_empty())
                    .map(|v| format!(" v{v}"))
                    .unwrap_or_default(),
                payload(e.input.as_deref())
            ),
            EventType::ExecutionCompleted(e) => format!(
                "ExecutionCompleted  {} {}{}",
                status_name(e.orchestration_status),
                payload(e.result.as_deref()),
                e.failure_details
                    .as_ref()
                    .map(|f| format!(" {}", failure(Some(f))))
                    .unwrap_or_default()
            ),
            EventType::ExecutionTerminated(e) => {
                format!("ExecutionTerminated {}", payload(e.input.as_deref()))
            }
            EventType::ExecutionSuspended(_) => "ExecutionSuspended".to_owned(),
            EventType::ExecutionResumed(_) => "ExecutionResumed".to_owned(),
            EventType::ContinueAsNew(e) => {
                format!("ContinuedAsNew      input {}", payload(e.input.as_deref()))
            }
            EventType::OrchestratorStarted(_) => "OrchestratorStarted".to_owned(),
            EventType::OrchestratorCompleted(_) => "OrchestratorCompleted".to_owned(),
            EventType::TaskScheduled(e) => {
                scheduled.insert(event.event_id, (e.name.clone(), at));
                format!(
                    "TaskScheduled       #{} {} input {}",
                    event.event_id,
                    e.name,
                    payload(e.input.as_deref())
                )
            }
            EventType::TaskCompleted(e) => {
                let (name, duration) = took(e.task_scheduled_id, &scheduled);
                format!(
                    "TaskCompleted       #{} {name} → {}{duration}",
                    e.task_scheduled_id,
                    payload(e.result.as_deref())
                )
            }
            EventType::TaskFailed(e) => {
                let (name, duration) = took(e.task_scheduled_id, &scheduled);
                let failure = failure(e.failure_details.as_ref());
                format!(
                    "TaskFailed          #{} {name} ✗ {failure}{duration}",
                    e.task_scheduled_id
                )
            }
            EventType::SubOrchestrationInstanceCreated(e) => {
                scheduled.insert(event.event_id, (e.name.clone(), at));
                format!(
                    "SubOrchestration    #{} {} as {} input {}",
                    event.event_id,
                    e.name,
                    e.instance_id,
                    payload(e.input.as_deref())
                )
            }
            EventType::SubOrchestrationInstanceCompleted(e) => {
                let (name, duration) = took(e.task_scheduled_id, &scheduled);
                format!(
                    "SubOrchCompleted    #{} {name} → {}{duration}",
                    e.task_scheduled_id,
                    payload(e.result.as_deref())
                )
            }
            EventType::SubOrchestrationInstanceFailed(e) => {
                let (name, duration) = took(e.task_scheduled_id, &scheduled);
                let failure = failure(e.failure_details.as_ref());
                format!(
                    "SubOrchFailed       #{} {name} ✗ {failure}{duration}",
                    e.task_scheduled_id
                )
            }
            EventType::TimerCreated(e) => {
                scheduled.insert(event.event_id, ("timer".to_owned(), at));
                let fire_at = e
                    .fire_at
                    .as_ref()
                    .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.max(0) as u32))
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default();
                format!("TimerCreated        #{} fires at {fire_at}", event.event_id)
            }
            EventType::TimerFired(e) => {
                let (_, duration) = took(e.timer_id, &scheduled);
                format!("TimerFired          #{}{duration}", e.timer_id)
            }
            EventType::EventRaised(e) => {
                format!(
                    "EventRaised         {} {}",
                    e.name,
                    payload(e.input.as_deref())
                )
            }
            EventType::EventSent(e) => format!(
                "EventSent           {} to {} {}",
                e.name,
                e.instance_id,
                payload(e.input.as_deref())
            ),
            other => format!("{other:?}")
                .split('(')
                .next()
                .unwrap_or("Event")
                .to_owned(),
        };
        out.push(format!("{offset}  {line}"));
    }
    out
}

/// A JSON payload for one line: `-` when absent, cut to [`PAYLOAD_CHARS`].
pub(crate) fn payload(raw: Option<&str>) -> String {
    match raw.filter(|p| !p.is_empty()) {
        None => "-".to_owned(),
        Some(text) if text.chars().count() > PAYLOAD_CHARS => {
            let cut: String = text.chars().take(PAYLOAD_CHARS).collect();
            format!("{cut}…")
        }
        Some(text) => text.to_owned(),
    }
}

/// `type: message` of a failure; empty when there is none.
fn failure(details: Option<&durable::proto::TaskFailureDetails>) -> String {
    details
        .map(|f| format!("{}: {}", f.error_type, f.error_message))
        .unwrap_or_default()
}

fn status_name(status: i32) -> &'static str {
    durable::proto::OrchestrationStatus::try_from(status)
        .map(|s| s.as_str_name().trim_start_matches("ORCHESTRATION_STATUS_"))
        .unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;
    use durable::proto;

    fn at(ms: i64, event_id: i32, kind: EventType) -> HistoryEvent {
        HistoryEvent {
            event_id,
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_700_000_000 + ms / 1000,
                nanos: ((ms % 1000) * 1_000_000) as i32,
            }),
            event_type: Some(kind),
        }
    }

    #[test]
    fn completions_name_their_task_and_duration() {
        let events = [
            at(
                0,
                -1,
                EventType::ExecutionStarted(proto::ExecutionStartedEvent {
                    name: "chain".into(),
                    input: Some("\"Tokyo\"".into()),
                    ..Default::default()
                }),
            ),
            at(
                10,
                0,
                EventType::TaskScheduled(proto::TaskScheduledEvent {
                    name: "hello".into(),
                    input: Some("\"Tokyo\"".into()),
                    ..Default::default()
                }),
            ),
            at(
                260,
                -1,
                EventType::TaskCompleted(proto::TaskCompletedEvent {
                    task_scheduled_id: 0,
                    result: Some(format!("\"{}\"", "x".repeat(200))),
                }),
            ),
        ];
        let lines = lines(&events);
        assert!(
            lines[0].contains("+   0.000s  ExecutionStarted    chain input \"Tokyo\""),
            "{}",
            lines[0]
        );
        assert!(
            lines[2].contains("#0 hello →") && lines[2].ends_with("… (took 0.250s)"),
            "{}",
            lines[2]
        );
    }
}
