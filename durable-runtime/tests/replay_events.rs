//! Replay of external events: typed payloads, case-insensitive names, FIFO buffering, send.

// Helpers outside #[test] fns unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use durable::OrchestrationContext;
use durable::proto::orchestrator_action::OrchestratorActionType;
use serde::Deserialize;

#[derive(Deserialize, serde::Serialize, Debug, PartialEq)]
struct Approval {
    by: String,
    level: u8,
}

#[test]
fn typed_event_payload_is_decoded() {
    let registry = registry("approve", |ctx: OrchestrationContext, _: ()| async move {
        let a: Approval = ctx.wait_for_external_event("approval").await?;
        Ok(format!("{} at {}", a.by, a.level))
    });
    let mut sim = Sim::new(registry);
    let r = sim.start("approve", "null");
    assert!(r.actions.is_empty());
    let r = sim.episode(vec![raised("approval", r#"{"by":"ann","level":2}"#)]);
    assert_eq!(output(&r), "\"ann at 2\"");
}

#[test]
fn event_names_match_case_insensitively() {
    for (waited, raised_as) in [
        ("Approval", "approval"),
        ("approval", "APPROVAL"),
        ("ÄRGER", "ärger"),
    ] {
        let w = waited.to_owned();
        let registry = registry("ci", move |ctx: OrchestrationContext, _: ()| {
            let w = w.clone();
            async move {
                let v: u32 = ctx.wait_for_external_event(&w).await?;
                Ok(v)
            }
        });
        let mut sim = Sim::new(registry);
        sim.start("ci", "null");
        let r = sim.episode(vec![raised(raised_as, "7")]);
        assert_eq!(output(&r), "7", "{waited} vs {raised_as}");
    }
}

#[test]
fn early_events_are_buffered_and_delivered_in_arrival_order() {
    let registry = registry("fifo", |ctx: OrchestrationContext, _: ()| async move {
        // Wait on a timer first, so the events arrive before anyone waits for them.
        ctx.create_timer(std::time::Duration::from_secs(10)).await?;
        let mut seen = Vec::new();
        for _ in 0..3 {
            let v: u32 = ctx.wait_for_external_event("item").await?;
            seen.push(v);
        }
        Ok(seen)
    });
    let mut sim = Sim::new(registry);
    sim.start("fifo", "null");
    let r = sim.episode(vec![
        raised("item", "1"),
        raised("ITEM", "2"),
        raised("other", "0"),
    ]);
    assert!(r.actions.is_empty());
    let r = sim.episode(vec![raised("Item", "3")]);
    assert!(r.actions.is_empty());
    let r = sim.fire_timer(0);
    assert_eq!(output(&r), "[1,2,3]");
}

#[test]
fn several_waiters_for_one_name_are_served_oldest_first() {
    let registry = registry("waiters", |ctx: OrchestrationContext, _: ()| async move {
        let first = ctx.wait_for_external_event::<String>("e");
        let second = ctx.wait_for_external_event::<String>("e");
        let (a, b) = (second.await?, first.await?);
        Ok(format!("{b},{a}"))
    });
    let mut sim = Sim::new(registry);
    sim.start("waiters", "null");
    let r = sim.episode(vec![raised("e", "\"x\""), raised("e", "\"y\"")]);
    assert_eq!(output(&r), "\"x,y\"");
}

#[test]
fn event_without_payload_reads_as_null() {
    let registry = registry("null", |ctx: OrchestrationContext, _: ()| async move {
        let v: Option<String> = ctx.wait_for_external_event("go").await?;
        Ok(v.is_none())
    });
    let mut sim = Sim::new(registry);
    sim.start("null", "null");
    let r = sim.episode(vec![durable::proto::history_event::EventType::EventRaised(
        durable::proto::EventRaisedEvent {
            name: "go".into(),
            input: None,
        },
    )]);
    assert_eq!(output(&r), "true");
}

#[test]
fn event_payload_of_the_wrong_type_is_a_task_error() {
    let registry = registry("bad", |ctx: OrchestrationContext, _: ()| async move {
        let v = ctx.wait_for_external_event::<u32>("n").await;
        Ok(matches!(v, Err(durable::TaskError::Deserialize { .. })))
    });
    let mut sim = Sim::new(registry);
    sim.start("bad", "null");
    let r = sim.episode(vec![raised("n", "\"seven\"")]);
    assert_eq!(output(&r), "true");
}

#[test]
fn send_event_emits_a_send_action_and_is_confirmed_on_replay() {
    let registry = registry("sender", |ctx: OrchestrationContext, _: ()| async move {
        ctx.send_event("other-instance", "Ping", &serde_json::json!({"n": 1}));
        ctx.create_timer(std::time::Duration::from_secs(1)).await?;
        ctx.send_event("other-instance", "Ping", &2);
        Ok("sent")
    });
    let mut sim = Sim::new(registry);
    let r = sim.start("sender", "null");
    assert_eq!(
        summary(&r),
        [
            (0, "send", "other-instance/Ping".to_owned()),
            (
                1,
                "timer",
                (t0() + chrono::Duration::seconds(1)).to_rfc3339()
            ),
        ]
    );
    match r.actions[0].orchestrator_action_type.as_ref().unwrap() {
        OrchestratorActionType::SendEvent(e) => assert_eq!(e.data.as_deref(), Some(r#"{"n":1}"#)),
        other => panic!("{other:?}"),
    }
    let r = sim.fire_timer(1);
    assert_eq!(
        summary(&r),
        [
            (2, "send", "other-instance/Ping".to_owned()),
            (3, "complete", "Completed".to_owned()),
        ]
    );
}
