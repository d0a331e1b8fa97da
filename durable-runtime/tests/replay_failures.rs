//! Failures: caught task errors and compensation, panics, unknown orchestrators, bad input,
//! rewind.

// Helpers outside #[test] fns unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use durable::proto::history_event::EventType;
use durable::proto::orchestrator_action::OrchestratorActionType;
use durable::testing::HistoryBuilder;
use durable::{OrchestrationContext, Registry};

fn booking() -> Registry {
    registry("book", |ctx: OrchestrationContext, _: ()| async move {
        let flight: String = ctx.call_activity_by_name("book_flight", ()).await?;
        match ctx
            .call_activity_by_name::<_, String>("book_hotel", ())
            .await
        {
            Ok(hotel) => Ok(format!("{flight}+{hotel}")),
            Err(error) => {
                let details = error.details();
                let _: () = ctx.call_activity_by_name("cancel_flight", &flight).await?;
                Ok(format!(
                    "compensated {flight} after {}: {}",
                    details.error_type, details.message
                ))
            }
        }
    })
}

#[test]
fn failure_is_caught_and_compensated() {
    let mut sim = Sim::new(booking());
    sim.start("book", "null");
    let r = sim.episode(vec![task_completed(0, "\"F1\"")]);
    assert_eq!(summary(&r), [(1, "activity", "book_hotel".to_owned())]);
    let r = sim.episode(vec![task_failed(1, "NoRooms", "hotel full")]);
    assert_eq!(summary(&r), [(2, "activity", "cancel_flight".to_owned())]);
    assert_eq!(activity_inputs(&r), ["\"F1\""]);
    let r = sim.episode(vec![task_completed(2, "null")]);
    assert_eq!(output(&r), "\"compensated F1 after NoRooms: hotel full\"");
}

#[test]
fn uncaught_activity_failure_fails_the_orchestration_with_the_cause() {
    let mut sim = Sim::new(booking());
    sim.start("book", "null");
    let r = sim.episode(vec![task_failed(0, "Overbooked", "no seats")]);
    let f = failure(&r);
    assert_eq!(f.error_type, "durable::TaskError");
    assert_eq!(
        f.error_message,
        "task `book_flight` failed: Overbooked: no seats"
    );
    let inner = f.inner_failure.unwrap();
    assert_eq!(
        (inner.error_type.as_str(), inner.error_message.as_str()),
        ("Overbooked", "no seats")
    );
}

#[test]
fn failure_details_survive_including_inner_and_non_retriable() {
    let registry = registry("d", |ctx: OrchestrationContext, _: ()| async move {
        let e = ctx
            .call_activity_by_name::<_, ()>("x", ())
            .await
            .unwrap_err();
        let d = e.details();
        Ok((
            d.error_type,
            d.non_retriable,
            d.stack_trace,
            d.inner.map(|i| i.message),
        ))
    });
    let mut sim = Sim::new(registry);
    sim.start("d", "null");
    let r = sim.episode(vec![EventType::TaskFailed(
        durable::proto::TaskFailedEvent {
            task_scheduled_id: 0,
            failure_details: Some(durable::proto::TaskFailureDetails {
                error_type: "builtins.ValueError".into(),
                error_message: "bad".into(),
                stack_trace: Some("trace".into()),
                inner_failure: Some(Box::new(durable::proto::TaskFailureDetails {
                    error_message: "root cause".into(),
                    ..Default::default()
                })),
                is_non_retriable: true,
                ..Default::default()
            }),
        },
    )]);
    assert_eq!(
        output(&r),
        r#"["builtins.ValueError",true,"trace","root cause"]"#
    );
}

#[test]
fn orchestrator_error_fails_with_its_type_and_message() {
    let registry = registry("e", |_ctx: OrchestrationContext, n: i32| async move {
        if n < 0 {
            return Err::<(), _>(
                durable::Error::typed("NegativeInput", "n must be >= 0").non_retriable(),
            );
        }
        let parsed: u32 = "x".parse()?;
        let _ = parsed;
        Ok(())
    });
    let mut sim = Sim::new(registry.clone_for_test());
    let f = failure(&sim.start("e", "-1"));
    assert_eq!(
        (f.error_type.as_str(), f.error_message.as_str()),
        ("NegativeInput", "n must be >= 0")
    );
    assert!(f.is_non_retriable);
    let mut sim = Sim::new(registry);
    let f = failure(&sim.start("e", "1"));
    assert_eq!(f.error_type, "core::num::error::ParseIntError");
}

trait CloneForTest {
    fn clone_for_test(&self) -> Registry;
}

impl CloneForTest for Registry {
    fn clone_for_test(&self) -> Registry {
        let mut copy = Registry::new();
        for name in self.orchestrator_names() {
            let f = self.orchestrator(name).unwrap().clone();
            copy.add_orchestrator_fn(name, move |c, i| f(c, i)).unwrap();
        }
        copy
    }
}

#[test]
fn panics_become_failed_with_type_panic() {
    let registry = registry("boom", |ctx: OrchestrationContext, _: ()| async move {
        let v: Vec<u32> = ctx.call_activity_by_name("list", ()).await?;
        Ok(v[10])
    });
    let mut sim = Sim::new(registry);
    sim.start("boom", "null");
    let r = sim.episode(vec![task_completed(0, "[1,2]")]);
    let f = failure(&r);
    assert_eq!(f.error_type, "durable::Panic");
    assert!(
        f.error_message.contains("index out of bounds"),
        "{}",
        f.error_message
    );
}

#[test]
fn unknown_orchestrator_fails_with_orchestrator_task_not_found() {
    let registry = registry("known", |_ctx: OrchestrationContext, _: ()| async move {
        Ok(())
    });
    let mut sim = Sim::new(registry);
    let r = sim.start("unknown", "null");
    let f = failure(&r);
    assert_eq!(f.error_type, "OrchestratorTaskNotFound");
    assert!(f.is_non_retriable);
    assert!(
        f.error_message.contains("`unknown`") && f.error_message.contains("known"),
        "{}",
        f.error_message
    );
    assert_eq!(r.actions[0].id, 0);
}

#[test]
fn undecodable_input_fails_the_typed_orchestrator() {
    #[derive(Clone, Copy)]
    struct Typed;
    impl durable::Orchestrator for Typed {
        type Input = u32;
        type Output = u32;
        const NAME: &'static str = "typed";
        fn run(
            _ctx: OrchestrationContext,
            input: u32,
        ) -> futures::future::LocalBoxFuture<'static, durable::Result<u32>> {
            Box::pin(async move { Ok(input) })
        }
    }
    let mut registry = Registry::new();
    registry.add_orchestrator::<Typed>().unwrap();
    let mut sim = Sim::new(registry);
    let f = failure(&sim.start("typed", "\"text\""));
    assert_eq!(f.error_type, "durable::InvalidInput");
    assert!(
        f.error_message.contains("orchestrator `typed`"),
        "{}",
        f.error_message
    );
}

#[test]
fn rewind_returns_history_without_failed_tasks() {
    let mut history = HistoryBuilder::new("rw");
    history
        .orchestrator_started()
        .execution_started("book", "null")
        .task_scheduled(0, "book_flight")
        .orchestrator_started()
        .task_completed(0, "\"F\"")
        .task_scheduled(1, "book_hotel")
        .orchestrator_started()
        .task_failed(1, "NoRooms", "full")
        .push(
            2,
            EventType::ExecutionCompleted(durable::proto::ExecutionCompletedEvent {
                orchestration_status: durable::proto::OrchestrationStatus::Failed as i32,
                ..Default::default()
            }),
        )
        .orchestrator_started()
        .push(
            -1,
            EventType::ExecutionRewound(durable::proto::ExecutionRewoundEvent {
                reason: Some("retry".into()),
                ..Default::default()
            }),
        );
    let r = durable::orchestration::execute(&booking(), &history.request_replaying_all_but(2));
    assert_eq!(r.actions.len(), 1);
    assert_eq!(r.actions[0].id, -1);
    let Some(OrchestratorActionType::RewindOrchestration(rw)) =
        &r.actions[0].orchestrator_action_type
    else {
        panic!("{:?}", r.actions)
    };
    let kinds: Vec<String> = rw
        .new_history
        .iter()
        .map(|e| match e.event_type.as_ref().unwrap() {
            EventType::OrchestratorStarted(_) => "OS".to_owned(),
            EventType::ExecutionStarted(_) => "ES".to_owned(),
            EventType::TaskScheduled(t) => format!("TS{}:{}", e.event_id, t.name),
            EventType::TaskCompleted(t) => format!("TC{}", t.task_scheduled_id),
            EventType::ExecutionRewound(_) => "RW".to_owned(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["OS", "ES", "TS0:book_flight", "OS", "TC0", "OS", "OS", "RW"]
    );
    // The new history has a fresh execution id.
    let Some(EventType::ExecutionStarted(started)) = &rw.new_history[1].event_type else {
        panic!()
    };
    let exec = started
        .orchestration_instance
        .as_ref()
        .unwrap()
        .execution_id
        .clone()
        .unwrap();
    assert_ne!(exec, "exec-1");
    assert!(!exec.is_empty());
}

/// Rewinding an instance whose failed activity ran under a retry policy (attempt, retry timer,
/// attempt) replays cleanly and schedules the activity again, with the same id as at first.
#[test]
fn rewind_after_exhausted_retries_reruns_the_activity() {
    let registry = registry("charge", |ctx: OrchestrationContext, _: ()| async move {
        let policy = durable::RetryPolicy::new(2, std::time::Duration::from_secs(5));
        let receipt: String = ctx
            .call_activity_by_name_with_retry("charge_card", "order-1", policy)
            .await?;
        Ok(receipt)
    });
    let mut sim = Sim::new(registry);
    sim.start("charge", "null");
    sim.episode(vec![task_failed(0, "Declined", "try later")]);
    sim.fire_timer(1);
    let last = sim.episode(vec![task_failed(2, "Declined", "still no")]);
    let failed = failure(&last);
    assert!(
        failed.error_message.contains("after 2 attempt"),
        "{failed:?}"
    );

    // The sidecar records the failure, then asks for a rewind.
    let mut past = sim.history.clone();
    past.push(event(
        -1,
        sim.now,
        EventType::ExecutionCompleted(durable::proto::ExecutionCompletedEvent {
            orchestration_status: durable::proto::OrchestrationStatus::Failed as i32,
            ..Default::default()
        }),
    ));
    let rewound_at = sim.now + chrono::Duration::seconds(10);
    let request = durable::proto::OrchestratorRequest {
        instance_id: sim.instance_id.clone(),
        past_events: past,
        new_events: vec![
            event(
                -1,
                rewound_at,
                EventType::OrchestratorStarted(Default::default()),
            ),
            event(
                -1,
                rewound_at,
                EventType::ExecutionRewound(Default::default()),
            ),
        ],
        ..Default::default()
    };
    let response = durable::orchestration::execute(&sim.registry, &request);
    let Some(OrchestratorActionType::RewindOrchestration(rewind)) =
        &response.actions[0].orchestrator_action_type
    else {
        panic!("{:?}", response.actions)
    };
    let ids: Vec<i32> = rewind
        .new_history
        .iter()
        .filter(|e| e.event_id >= 0)
        .map(|e| e.event_id)
        .collect();
    assert!(
        ids.is_empty(),
        "no action of the failed part survives: {ids:?}"
    );

    // The sidecar replaces the history and runs an episode: the first attempt is scheduled
    // again with id 0, and nothing disagrees with history.
    let request = durable::proto::OrchestratorRequest {
        instance_id: sim.instance_id.clone(),
        past_events: rewind.new_history.clone(),
        new_events: vec![event(
            -1,
            rewound_at,
            EventType::OrchestratorStarted(Default::default()),
        )],
        ..Default::default()
    };
    let response = durable::orchestration::execute(&sim.registry, &request);
    assert_eq!(
        summary(&response),
        [(0, "activity", "charge_card".to_owned())],
        "{:?}",
        response.actions
    );
}

/// A custom status or event payload that JSON cannot represent fails the orchestration with a
/// clear error instead of being dropped silently.
#[test]
fn unserializable_status_and_event_data_fail_clearly() {
    let status_registry = registry(
        "bad_status",
        |ctx: OrchestrationContext, _: ()| async move {
            let mut status = std::collections::BTreeMap::new();
            status.insert((1, 2), "tuple keys are not JSON object keys");
            ctx.set_custom_status(&status);
            Ok(())
        },
    );
    let mut sim = Sim::new(status_registry);
    let f = failure(&sim.start("bad_status", "null"));
    assert_eq!(f.error_type, "durable::InvalidInput");
    assert!(
        f.error_message.contains("custom status"),
        "{}",
        f.error_message
    );

    let event_registry = registry("bad_event", |ctx: OrchestrationContext, _: ()| async move {
        let mut data = std::collections::BTreeMap::new();
        data.insert((1, 2), 3);
        ctx.send_event("other", "ping", &data);
        Ok(())
    });
    let mut sim = Sim::new(event_registry);
    let f = failure(&sim.start("bad_event", "null"));
    assert_eq!(f.error_type, "durable::InvalidInput");
    assert!(
        f.error_message.contains("event `ping`"),
        "{}",
        f.error_message
    );
}
