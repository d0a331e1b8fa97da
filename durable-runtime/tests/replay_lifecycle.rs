//! Suspend, resume and terminate.

// Helpers outside #[test] fns unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use durable::OrchestrationContext;
use durable::proto::OrchestrationStatus;

fn two_events() -> durable::Registry {
    registry("two", |ctx: OrchestrationContext, _: ()| async move {
        let a: u32 = ctx.wait_for_external_event("x").await?;
        let _: u32 = ctx.call_activity_by_name("act", a).await?;
        let b: u32 = ctx.wait_for_external_event("x").await?;
        Ok(a * 10 + b)
    })
}

#[test]
fn events_are_buffered_while_suspended_and_delivered_on_resume() {
    let mut sim = Sim::new(two_events());
    sim.start("two", "null");
    let r = sim.episode(vec![suspended(), raised("x", "1")]);
    assert!(
        r.actions.is_empty(),
        "suspended: nothing runs {:?}",
        summary(&r)
    );
    let r = sim.episode(vec![raised("x", "2")]);
    assert!(r.actions.is_empty());
    let r = sim.episode(vec![resumed()]);
    assert_eq!(summary(&r), [(0, "activity", "act".to_owned())]);
    let r = sim.episode(vec![task_completed(0, "0")]);
    assert_eq!(output(&r), "12");
}

#[test]
fn suspend_and_resume_in_one_batch() {
    let mut sim = Sim::new(two_events());
    sim.start("two", "null");
    let r = sim.episode(vec![
        suspended(),
        raised("x", "3"),
        resumed(),
        raised("x", "4"),
    ]);
    assert_eq!(summary(&r), [(0, "activity", "act".to_owned())]);
    let r = sim.episode(vec![task_completed(0, "0")]);
    assert_eq!(output(&r), "34");
}

#[test]
fn actions_scheduled_before_a_suspension_are_confirmed_not_resent() {
    // Episode: the activity is scheduled, then the instance is suspended in the same batch,
    // so history has TaskScheduled after ExecutionSuspended.
    let mut sim = Sim::new(two_events());
    sim.start("two", "null");
    let r = sim.episode(vec![raised("x", "5"), suspended()]);
    assert_eq!(summary(&r), [(0, "activity", "act".to_owned())]);
    let r = sim.episode(vec![task_completed(0, "0")]);
    assert!(r.actions.is_empty(), "{:?}", summary(&r));
    let r = sim.episode(vec![resumed(), raised("x", "6")]);
    assert_eq!(output(&r), "56");
}

#[test]
fn terminate_completes_with_terminated_and_drops_pending_actions() {
    let registry = registry("long", |ctx: OrchestrationContext, _: ()| async move {
        ctx.create_timer(Duration::from_secs(3600)).await?;
        let _: u8 = ctx.call_activity_by_name("never", ()).await?;
        Ok(())
    });
    let mut sim = Sim::new(registry);
    sim.start("long", "null");
    let r = sim.episode(vec![terminated("\"stopped by admin\"")]);
    assert_eq!(r.actions.len(), 1);
    let c = completion(&r).unwrap();
    assert_eq!(c.orchestration_status(), OrchestrationStatus::Terminated);
    assert_eq!(c.result.as_deref(), Some("\"stopped by admin\""));
}

#[test]
fn terminate_while_suspended_is_not_buffered() {
    let mut sim = Sim::new(two_events());
    sim.start("two", "null");
    sim.episode(vec![suspended()]);
    let r = sim.episode(vec![terminated("null")]);
    assert_eq!(
        completion(&r).unwrap().orchestration_status(),
        OrchestrationStatus::Terminated
    );
}

#[test]
fn terminate_in_the_same_batch_as_new_work_wins() {
    let mut sim = Sim::new(two_events());
    sim.start("two", "null");
    let r = sim.episode(vec![terminated("\"bye\""), raised("x", "1")]);
    assert_eq!(summary(&r), [(0, "complete", "Terminated".to_owned())]);
}
