//! Replay of when_all / when_any: history order decides, losers stay usable.

// Helpers outside #[test] fns unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use durable::{OrchestrationContext, Task, TaskRef};

fn race_registry() -> durable::Registry {
    registry("race", |ctx: OrchestrationContext, _: ()| async move {
        let a: Task<String> = ctx.call_activity_by_name("a", ());
        let b: Task<String> = ctx.call_activity_by_name("b", ());
        let c: Task<String> = ctx.call_activity_by_name("c", ());
        let winner = durable::when_any([&a, &b, &c]).await;
        Ok(winner)
    })
}

#[test]
fn when_any_picks_the_first_completion_in_history_order_table() {
    // (completion order in one batch, expected winner)
    let cases: [(&[i32], usize); 4] = [
        (&[0, 1, 2], 0),
        (&[2, 0, 1], 2),
        (&[1, 2], 1),
        (&[2, 1, 0], 2),
    ];
    for (order, winner) in cases {
        let mut sim = Sim::new(race_registry());
        sim.start("race", "null");
        let events = order
            .iter()
            .map(|&id| task_completed(id, "\"x\""))
            .collect();
        let r = sim.episode(events);
        assert_eq!(output(&r), winner.to_string(), "order {order:?}");
    }
}

#[test]
fn when_any_over_tasks_completed_before_the_episode_uses_history_order() {
    // The tasks complete while the orchestrator waits on a timer; only later does it race them.
    let registry = registry("late", |ctx: OrchestrationContext, _: ()| async move {
        let a: Task<u32> = ctx.call_activity_by_name("a", ());
        let b: Task<u32> = ctx.call_activity_by_name("b", ());
        ctx.create_timer(Duration::from_secs(60)).await?;
        let winner = durable::when_any([b.handle(), a.handle()]).await;
        Ok(winner)
    });
    let mut sim = Sim::new(registry);
    sim.start("late", "null");
    sim.episode(vec![task_completed(0, "1")]);
    sim.episode(vec![task_completed(1, "2")]);
    let r = sim.fire_timer(2);
    // a (index 1 in the list) completed first in history.
    assert_eq!(output(&r), "1");
}

#[test]
fn when_any_loser_can_still_be_awaited_and_inspected_later() {
    let registry = registry("loser", |ctx: OrchestrationContext, _: ()| async move {
        let fast: Task<String> = ctx.call_activity_by_name("fast", ());
        let slow: Task<String> = ctx.call_activity_by_name("slow", ());
        let winner = durable::when_any([&fast, &slow]).await;
        let slow_done_at_race = slow.is_completed();
        let first = fast.result().unwrap()?;
        let second = slow.await?;
        Ok((winner, slow_done_at_race, first, second))
    });
    let mut sim = Sim::new(registry);
    sim.start("loser", "null");
    let r = sim.episode(vec![task_completed(0, "\"f\"")]);
    assert!(r.actions.is_empty());
    let r = sim.episode(vec![task_completed(1, "\"s\"")]);
    assert_eq!(output(&r), r#"[0,false,"f","s"]"#);
}

fn approval_registry() -> durable::Registry {
    registry("approval", |ctx: OrchestrationContext, _: ()| async move {
        let approval: Task<String> = ctx.wait_for_external_event("Approved");
        let timeout = ctx.create_timer(Duration::from_secs(3600));
        if durable::when_any([approval.handle(), timeout.handle()]).await == 1 {
            return Ok("timed out".to_owned());
        }
        Ok(format!("approved by {}", approval.await?))
    })
}

#[test]
fn event_beats_timer() {
    let mut sim = Sim::new(approval_registry());
    let r = sim.start("approval", "null");
    assert_eq!(summary(&r)[0].1, "timer");
    let r = sim.episode(vec![raised("approved", "\"bob\"")]);
    assert_eq!(output(&r), "\"approved by bob\"");
}

#[test]
fn timer_beats_event() {
    let mut sim = Sim::new(approval_registry());
    sim.start("approval", "null");
    let r = sim.fire_timer(0);
    assert_eq!(output(&r), "\"timed out\"");
}

#[test]
fn timer_and_event_in_one_batch_resolve_by_batch_order() {
    for (timer_first, expected) in [(true, "\"timed out\""), (false, "\"approved by eve\"")] {
        let mut sim = Sim::new(approval_registry());
        sim.start("approval", "null");
        let fire_at = sim.timer_fire_at(0);
        let events = if timer_first {
            vec![timer_fired(0, fire_at), raised("Approved", "\"eve\"")]
        } else {
            vec![raised("Approved", "\"eve\""), timer_fired(0, fire_at)]
        };
        let r = sim.episode_at(fire_at, events);
        assert_eq!(output(&r), expected, "timer_first={timer_first}");
    }
}

#[test]
fn when_all_fails_fast_with_the_first_failure_in_history_order() {
    let registry = registry("all", |ctx: OrchestrationContext, _: ()| async move {
        let tasks: Vec<Task<u32>> = (0..3).map(|i| ctx.call_activity_by_name("t", i)).collect();
        match durable::when_all(tasks).await {
            Ok(v) => Ok(format!("ok {v:?}")),
            Err(e) => Ok(format!(
                "{} / {}",
                e.details().error_type,
                e.details().message
            )),
        }
    });
    let mut sim = Sim::new(registry);
    sim.start("all", "null");
    let r = sim.episode(vec![
        task_completed(0, "1"),
        task_failed(2, "E2", "second"),
        task_failed(1, "E1", "first"),
    ]);
    // Fail fast: the orchestrator continues at the first failure even though task 1 is open.
    assert_eq!(output(&r), "\"E2 / second\"");
}

#[test]
fn when_all_of_nothing_completes_at_once() {
    let registry = registry("none", |_ctx: OrchestrationContext, _: ()| async move {
        let v: Vec<u8> = durable::when_all(Vec::<Task<u8>>::new()).await?;
        Ok(v.len())
    });
    let mut sim = Sim::new(registry);
    assert_eq!(output(&sim.start("none", "null")), "0");
}

#[test]
fn when_any_over_mixed_types_via_task_refs() {
    let registry = registry("mixed", |ctx: OrchestrationContext, _: ()| async move {
        let n: Task<u32> = ctx.call_activity_by_name("n", ());
        let s: Task<String> = ctx.wait_for_external_event("s");
        let sub: Task<bool> = ctx.call_sub_orchestrator_by_name(
            "child",
            (),
            durable::SubOrchestratorOptions::new().instance_id("c1"),
        );
        let refs: Vec<TaskRef> = vec![n.clone().into(), (&s).into(), sub.handle()];
        let first = durable::when_any(refs).await;
        let rest = durable::when_any([n.handle(), sub.handle()]).await;
        Ok((first, rest))
    });
    let mut sim = Sim::new(registry);
    let r = sim.start("mixed", "null");
    assert_eq!(
        summary(&r),
        [
            (0, "activity", "n".to_owned()),
            (1, "sub", "child@c1".to_owned())
        ]
    );
    let r = sim.episode(vec![sub_completed(1, "true"), raised("s", "\"x\"")]);
    assert_eq!(output(&r), "[2,1]");
}

#[test]
fn nested_when_all_inside_when_any() {
    let registry = registry("nested", |ctx: OrchestrationContext, _: ()| async move {
        let a: Task<u8> = ctx.call_activity_by_name("a", ());
        let b: Task<u8> = ctx.call_activity_by_name("b", ());
        let timer = ctx.create_timer(Duration::from_secs(5));
        // A sub-orchestration-free race of a batch against a timer, by awaiting sequentially.
        let idx = durable::when_any([a.handle(), b.handle(), timer.handle()]).await;
        let both = durable::when_all([a, b]).await?;
        Ok((idx, both))
    });
    let mut sim = Sim::new(registry);
    sim.start("nested", "null");
    let r = sim.episode(vec![task_completed(1, "2")]);
    assert!(r.actions.is_empty());
    let r = sim.episode(vec![task_completed(0, "1")]);
    assert_eq!(output(&r), "[1,[1,2]]");
}
