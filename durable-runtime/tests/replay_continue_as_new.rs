//! continue_as_new: new input, versions, carrying unprocessed events.

// Helpers outside #[test] fns unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use durable::OrchestrationContext;
use durable::proto::history_event::EventType;
use durable::proto::orchestrator_action::OrchestratorActionType;
use durable::proto::{CompleteOrchestrationAction, OrchestrationStatus};

fn can(r: &durable::proto::OrchestratorResponse) -> CompleteOrchestrationAction {
    let c = completion(r).unwrap().clone();
    assert_eq!(
        c.orchestration_status(),
        OrchestrationStatus::ContinuedAsNew,
        "{c:?}"
    );
    c
}

fn carried(c: &CompleteOrchestrationAction) -> Vec<(String, String)> {
    c.carryover_events
        .iter()
        .map(|e| match e.event_type.as_ref().unwrap() {
            EventType::EventRaised(r) => (r.name.clone(), r.input.clone().unwrap_or_default()),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn counter(save_events: bool) -> durable::Registry {
    registry(
        "counter",
        move |ctx: OrchestrationContext, n: u32| async move {
            let step: u32 = ctx.wait_for_external_event("add").await?;
            ctx.continue_as_new(&(n + step), save_events);
            Ok(())
        },
    )
}

#[test]
fn continue_as_new_completes_with_the_new_input() {
    let mut sim = Sim::new(counter(false));
    sim.start("counter", "1");
    let r = sim.episode(vec![raised("add", "4")]);
    let c = can(&r);
    assert_eq!(c.result.as_deref(), Some("5"));
    assert!(c.carryover_events.is_empty());
    assert_eq!(r.actions.len(), 1);
    assert_eq!(r.actions[0].id, 0);
}

#[test]
fn save_events_carries_unprocessed_events_in_arrival_order() {
    let mut sim = Sim::new(counter(true));
    sim.start("counter", "0");
    let r = sim.episode(vec![
        raised("other", "\"o1\""),
        raised("add", "1"),
        raised("ADD", "2"),
        raised("other", "\"o2\""),
    ]);
    let c = can(&r);
    assert_eq!(c.result.as_deref(), Some("1"));
    assert_eq!(
        carried(&c),
        [
            ("other".to_owned(), "\"o1\"".to_owned()),
            ("ADD".to_owned(), "2".to_owned()),
            ("other".to_owned(), "\"o2\"".to_owned()),
        ]
    );
}

#[test]
fn without_save_events_unprocessed_events_are_dropped() {
    let mut sim = Sim::new(counter(false));
    sim.start("counter", "0");
    let r = sim.episode(vec![raised("add", "1"), raised("add", "2")]);
    assert!(can(&r).carryover_events.is_empty());
}

#[test]
fn carried_events_reach_the_next_generation() {
    // Generation 1 continues as new; generation 2 starts with the carried events.
    let mut sim = Sim::new(counter(true));
    sim.start("counter", "10");
    let r = sim.episode(vec![raised("add", "1"), raised("add", "2")]);
    let c = can(&r);
    let mut next = Sim::new(counter(true));
    let mut new_events = vec![EventType::ExecutionStarted(
        durable::proto::ExecutionStartedEvent {
            name: "counter".into(),
            input: c.result.clone(),
            ..Default::default()
        },
    )];
    new_events.extend(
        c.carryover_events
            .iter()
            .map(|e| e.event_type.clone().unwrap()),
    );
    let r = next.episode_at(t0(), new_events);
    assert_eq!(can(&r).result.as_deref(), Some("13"));
}

#[test]
fn continue_as_new_versioned_sets_the_new_version() {
    let registry = registry("v", |ctx: OrchestrationContext, _: ()| async move {
        ctx.continue_as_new_versioned(&"next", false, "2.0.0");
        Ok(())
    });
    let mut sim = Sim::new(registry);
    let c = can(&sim.start("v", "null"));
    assert_eq!(c.new_version.as_deref(), Some("2.0.0"));
    assert_eq!(c.result.as_deref(), Some("\"next\""));
}

#[test]
fn pending_actions_are_sent_with_continue_as_new() {
    let registry = registry("s", |ctx: OrchestrationContext, _: ()| async move {
        ctx.send_event("peer", "hand-off", &1);
        ctx.continue_as_new(&(), false);
        Ok(())
    });
    let mut sim = Sim::new(registry);
    let r = sim.start("s", "null");
    assert_eq!(summary(&r)[0], (0, "send", "peer/hand-off".to_owned()));
    assert_eq!(summary(&r)[1], (1, "complete", "ContinuedAsNew".to_owned()));
    assert!(matches!(
        r.actions[1].orchestrator_action_type,
        Some(OrchestratorActionType::CompleteOrchestration(_))
    ));
}
