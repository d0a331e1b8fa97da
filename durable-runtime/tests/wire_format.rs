//! Wire exactness: prost encodings of our proto types compared with bytes computed by hand
//! from the field numbers in protocol.md §2, and one decode from hand-written bytes.
//!
//! Reminder of the encoding: a field key is `(number << 3) | wire_type` as a varint (wire type
//! 0 = varint, 2 = length-delimited); negative int32 values take ten bytes; google wrappers
//! (`StringValue`) are messages with the value in field 1; prost writes fields in tag order and
//! always writes a set oneof member, even an empty message.

// Helpers outside #[test] fns unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use durable::proto::history_event::EventType;
use durable::proto::orchestrator_action::OrchestratorActionType;
use durable::proto::{self, HistoryEvent, OrchestratorAction, work_item};
use prost::Message;

/// Parses "08 05 32 .." into bytes.
fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn show(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

const MINUS_ONE: &str = "ff ff ff ff ff ff ff ff ff 01";

fn event(event_id: i32, event_type: EventType) -> HistoryEvent {
    HistoryEvent {
        event_id,
        timestamp: None,
        event_type: Some(event_type),
    }
}

fn action(id: i32, kind: OrchestratorActionType) -> OrchestratorAction {
    OrchestratorAction {
        id,
        orchestrator_action_type: Some(kind),
    }
}

#[track_caller]
fn check(label: &str, encoded: Vec<u8>, expected: &str) {
    assert_eq!(show(&encoded), show(&hex(expected)), "{label}");
}

#[test]
fn history_events_encode_with_their_field_numbers() {
    let cases: Vec<(&str, HistoryEvent, String)> = vec![
        (
            "executionStarted #3",
            event(
                0,
                EventType::ExecutionStarted(proto::ExecutionStartedEvent {
                    name: "o".into(),
                    input: Some("null".into()),
                    ..Default::default()
                }),
            ),
            // 1a = field 3 LEN; name (#1) "o"; input (#3) StringValue{"null"}
            "1a 0b 0a 01 6f 1a 06 0a 04 6e 75 6c 6c".into(),
        ),
        (
            "taskScheduled #6 with eventId 5",
            event(
                5,
                EventType::TaskScheduled(proto::TaskScheduledEvent {
                    name: "a".into(),
                    ..Default::default()
                }),
            ),
            "08 05 32 03 0a 01 61".into(),
        ),
        (
            "taskCompleted #7 with eventId -1",
            event(
                -1,
                EventType::TaskCompleted(proto::TaskCompletedEvent {
                    task_scheduled_id: 0,
                    result: Some("1".into()),
                }),
            ),
            format!("08 {MINUS_ONE} 3a 05 12 03 0a 01 31"),
        ),
        (
            "timerFired #13",
            event(
                0,
                EventType::TimerFired(proto::TimerFiredEvent {
                    fire_at: None,
                    timer_id: 2,
                }),
            ),
            "6a 02 10 02".into(),
        ),
        (
            "orchestratorStarted #14 (empty message still written)",
            event(
                0,
                EventType::OrchestratorStarted(proto::OrchestratorStartedEvent {}),
            ),
            "72 00".into(),
        ),
        (
            "eventRaised #17 (two-byte key)",
            event(
                0,
                EventType::EventRaised(proto::EventRaisedEvent {
                    name: "go".into(),
                    input: Some("1".into()),
                }),
            ),
            "8a 01 09 0a 02 67 6f 12 03 0a 01 31".into(),
        ),
        (
            "entityOperationSignaled #23",
            event(
                0,
                EventType::EntityOperationSignaled(proto::EntityOperationSignaledEvent {
                    request_id: "r".into(),
                    operation: "op".into(),
                    ..Default::default()
                }),
            ),
            "ba 01 07 0a 01 72 12 02 6f 70".into(),
        ),
        (
            "executionRewound #30",
            event(
                0,
                EventType::ExecutionRewound(proto::ExecutionRewoundEvent {
                    reason: Some("x".into()),
                    ..Default::default()
                }),
            ),
            "f2 01 05 0a 03 0a 01 78".into(),
        ),
    ];
    for (label, event, expected) in cases {
        check(label, event.encode_to_vec(), &expected);
    }
}

#[test]
fn timestamp_is_field_two() {
    let event = HistoryEvent {
        event_id: 0,
        timestamp: Some(prost_types::Timestamp {
            seconds: 1,
            nanos: 0,
        }),
        event_type: Some(EventType::OrchestratorStarted(
            proto::OrchestratorStartedEvent {},
        )),
    };
    check("timestamp", event.encode_to_vec(), "12 02 08 01 72 00");
}

#[test]
fn orchestrator_actions_encode_with_their_field_numbers() {
    let cases: Vec<(&str, OrchestratorAction, String)> = vec![
        (
            "scheduleTask #2",
            action(
                1,
                OrchestratorActionType::ScheduleTask(proto::ScheduleTaskAction {
                    name: "a".into(),
                    input: Some("2".into()),
                    ..Default::default()
                }),
            ),
            "08 01 12 08 0a 01 61 1a 03 0a 01 32".into(),
        ),
        (
            "createTimer #4",
            action(
                2,
                OrchestratorActionType::CreateTimer(proto::CreateTimerAction {
                    fire_at: Some(prost_types::Timestamp {
                        seconds: 60,
                        nanos: 0,
                    }),
                }),
            ),
            "08 02 22 04 0a 02 08 3c".into(),
        ),
        (
            "completeOrchestration #6 (status COMPLETED = 1)",
            action(
                3,
                OrchestratorActionType::CompleteOrchestration(proto::CompleteOrchestrationAction {
                    orchestration_status: proto::OrchestrationStatus::Completed as i32,
                    result: Some("7".into()),
                    ..Default::default()
                }),
            ),
            "08 03 32 07 08 01 12 03 0a 01 37".into(),
        ),
        (
            "rewindOrchestration #9 with id -1",
            action(
                -1,
                OrchestratorActionType::RewindOrchestration(proto::RewindOrchestrationAction {
                    new_history: vec![event(
                        0,
                        EventType::OrchestratorStarted(proto::OrchestratorStartedEvent {}),
                    )],
                }),
            ),
            format!("08 {MINUS_ONE} 4a 04 0a 02 72 00"),
        ),
    ];
    for (label, action, expected) in cases {
        check(label, action.encode_to_vec(), &expected);
    }
}

#[test]
fn work_items_encode_with_their_field_numbers() {
    let cases: Vec<(&str, proto::WorkItem, &str)> = vec![
        (
            "orchestratorRequest #1 + completionToken #10",
            proto::WorkItem {
                completion_token: "k".into(),
                request: Some(work_item::Request::OrchestratorRequest(
                    proto::OrchestratorRequest {
                        instance_id: "i".into(),
                        ..Default::default()
                    },
                )),
            },
            "0a 03 0a 01 69 52 01 6b",
        ),
        (
            "activityRequest #2 (name #1, taskId #5)",
            proto::WorkItem {
                completion_token: String::new(),
                request: Some(work_item::Request::ActivityRequest(
                    proto::ActivityRequest {
                        name: "a".into(),
                        task_id: 3,
                        ..Default::default()
                    },
                )),
            },
            "12 05 0a 01 61 28 03",
        ),
        (
            "healthPing #4 + completionToken #10",
            proto::WorkItem {
                completion_token: "t".into(),
                request: Some(work_item::Request::HealthPing(proto::HealthPing {})),
            },
            "22 00 52 01 74",
        ),
    ];
    for (label, item, expected) in cases {
        check(label, item.encode_to_vec(), expected);
    }
}

#[test]
fn orchestrator_response_encodes_custom_status_and_completion_token() {
    let response = proto::OrchestratorResponse {
        instance_id: "i".into(),
        custom_status: Some("\"s\"".into()),
        completion_token: "t".into(),
        ..Default::default()
    };
    check(
        "customStatus #3, completionToken #4",
        response.encode_to_vec(),
        "0a 01 69 1a 05 0a 03 22 73 22 22 01 74",
    );
}

#[test]
fn hand_written_request_decodes_and_runs() {
    // OrchestratorRequest{instanceId "i", newEvents [OrchestratorStarted(ts 1 s),
    // ExecutionStarted{name "o", input "null"}]}
    let bytes = hex(&format!(
        "0a 01 69 \
         22 11 08 {MINUS_ONE} 12 02 08 01 72 00 \
         22 1c 08 {MINUS_ONE} 12 02 08 01 1a 0b 0a 01 6f 1a 06 0a 04 6e 75 6c 6c"
    ));
    let request = proto::OrchestratorRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(request.instance_id, "i");
    assert!(request.past_events.is_empty());
    assert_eq!(request.new_events.len(), 2);
    assert_eq!(request.new_events[0].event_id, -1);
    assert_eq!(request.new_events[0].timestamp.unwrap().seconds, 1);
    let Some(EventType::ExecutionStarted(started)) = &request.new_events[1].event_type else {
        panic!("{:?}", request.new_events[1])
    };
    assert_eq!(started.name, "o");
    assert_eq!(started.input.as_deref(), Some("null"));

    // And the decoded request runs: an orchestrator that returns its start time.
    let mut registry = durable::Registry::new();
    registry
        .add_orchestrator_fn("o", |ctx, _| {
            Box::pin(async move { Ok(Some(ctx.current_utc_datetime().timestamp().to_string())) })
        })
        .unwrap();
    let response = durable::orchestration::execute(&registry, &request);
    let bytes = response.encode_to_vec();
    // instanceId "i", one action {id 0, completeOrchestration{COMPLETED, result "1"}}.
    check(
        "response",
        bytes,
        "0a 01 69 12 09 32 07 08 01 12 03 0a 01 31",
    );
}
