//! Orchestrator code that disagrees with history fails with a clear nondeterminism error.

// Helpers outside #[test] fns unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use durable::OrchestrationContext;
use durable::testing::HistoryBuilder;

/// History of `two_steps` as originally run: activity "A" at 0, activity "B" at 1.
fn original_history() -> HistoryBuilder {
    let mut history = HistoryBuilder::new("nd");
    history
        .orchestrator_started()
        .execution_started("two_steps", "null")
        .task_scheduled(0, "A")
        .orchestrator_started()
        .task_completed(0, "1")
        .task_scheduled(1, "B")
        .orchestrator_started()
        .task_completed(1, "2");
    history
}

type Body =
    fn(OrchestrationContext) -> futures::future::LocalBoxFuture<'static, durable::Result<u32>>;

fn run(body: Body) -> durable::proto::OrchestratorResponse {
    let registry = registry("two_steps", move |ctx: OrchestrationContext, _: ()| {
        body(ctx)
    });
    durable::orchestration::execute(&registry, &original_history().request_replaying_all_but(2))
}

#[test]
fn unchanged_code_replays_fine() {
    let r = run(|ctx| {
        Box::pin(async move {
            let a: u32 = ctx.call_activity_by_name("A", ()).await?;
            let b: u32 = ctx.call_activity_by_name("B", ()).await?;
            Ok(a + b)
        })
    });
    assert_eq!(output(&r), "3");
}

#[test]
fn renamed_activity_names_expected_and_actual() {
    let r = run(|ctx| {
        Box::pin(async move {
            let a: u32 = ctx.call_activity_by_name("A", ()).await?;
            let b: u32 = ctx.call_activity_by_name("C", ()).await?;
            Ok(a + b)
        })
    });
    let message = nondeterminism(&r);
    assert!(
        message.contains(r#"expected activity "B" at id 1"#) && message.contains(r#"activity "C""#),
        "{message}"
    );
    assert_eq!(r.actions.len(), 1, "only the failure is reported");
}

#[test]
fn reordered_calls_are_detected() {
    let r = run(|ctx| {
        Box::pin(async move {
            let b: u32 = ctx.call_activity_by_name("B", ()).await?;
            let a: u32 = ctx.call_activity_by_name("A", ()).await?;
            Ok(a + b)
        })
    });
    let message = nondeterminism(&r);
    assert!(
        message.contains(r#"expected activity "A" at id 0"#) && message.contains(r#"activity "B""#),
        "{message}"
    );
}

#[test]
fn removed_call_is_detected() {
    let r = run(|ctx| {
        Box::pin(async move {
            let b: u32 = ctx.call_activity_by_name("B", ()).await?;
            Ok(b)
        })
    });
    // id 0 is now "B"; history says "A".
    let message = nondeterminism(&r);
    assert!(
        message.contains(r#"expected activity "A" at id 0"#),
        "{message}"
    );

    let r = run(|ctx| {
        Box::pin(async move {
            let a: u32 = ctx.call_activity_by_name("A", ()).await?;
            Ok(a)
        })
    });
    // The orchestrator finished after A; history has B at id 1: completing is fine as long
    // as the code never scheduled anything at 1... but history shows it did, so this is
    // nondeterminism.
    let message = nondeterminism(&r);
    assert!(
        message.contains(r#"expected activity "B" at id 1"#),
        "{message}"
    );
    assert!(message.contains("nothing"), "{message}");
}

#[test]
fn extra_timer_is_detected_with_kinds() {
    let r = run(|ctx| {
        Box::pin(async move {
            let a: u32 = ctx.call_activity_by_name("A", ()).await?;
            ctx.create_timer(Duration::from_secs(5)).await?;
            let b: u32 = ctx.call_activity_by_name("B", ()).await?;
            Ok(a + b)
        })
    });
    let message = nondeterminism(&r);
    assert!(
        message.contains(r#"expected activity "B" at id 1"#) && message.contains("timer"),
        "{message}"
    );
}

#[test]
fn activity_replaced_by_sub_orchestration_is_detected() {
    let r = run(|ctx| {
        Box::pin(async move {
            let a: u32 = ctx.call_activity_by_name("A", ()).await?;
            let b: u32 = ctx
                .call_sub_orchestrator_by_name(
                    "B",
                    (),
                    durable::SubOrchestratorOptions::new().instance_id("x"),
                )
                .await?;
            Ok(a + b)
        })
    });
    let message = nondeterminism(&r);
    assert!(message.contains("sub-orchestration \"B\""), "{message}");
}

#[test]
fn awaiting_a_non_durable_channel_is_nondeterminism() {
    let registry = registry("chan", |ctx: OrchestrationContext, _: ()| async move {
        let (_tx, rx) = futures::channel::oneshot::channel::<u32>();
        let _: u8 = ctx.call_activity_by_name("a", ()).await?;
        let v = rx.await.unwrap_or(0);
        Ok(v)
    });
    let mut sim = Sim::new(registry);
    sim.start("chan", "null");
    let r = sim.episode(vec![task_completed(0, "1")]);
    let message = nondeterminism(&r);
    assert!(message.contains("not a durable task"), "{message}");
}

#[test]
fn awaiting_std_pending_is_nondeterminism() {
    let registry = registry("pending", |_ctx: OrchestrationContext, _: ()| async move {
        std::future::pending::<()>().await;
        Ok(())
    });
    let mut sim = Sim::new(registry);
    let message = nondeterminism(&sim.start("pending", "null"));
    assert!(message.contains("not a durable task"), "{message}");
}

#[test]
fn busy_self_waking_loop_is_nondeterminism() {
    struct YieldForever;
    impl std::future::Future for YieldForever {
        type Output = ();
        fn poll(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
    let registry = registry("busy", |_ctx: OrchestrationContext, _: ()| async move {
        YieldForever.await;
        Ok(())
    });
    let mut sim = Sim::new(registry);
    let message = nondeterminism(&sim.start("busy", "null"));
    assert!(message.contains("keeps waking itself"), "{message}");
}

#[test]
fn changed_timer_to_event_wait_is_detected() {
    // History: timer at id 0; new code waits for an event instead and schedules an activity.
    let mut history = HistoryBuilder::new("nd2");
    let now = history.now();
    history
        .orchestrator_started()
        .execution_started("t", "null")
        .timer_created(0, now + chrono::Duration::seconds(5))
        .orchestrator_started()
        .timer_fired(0, now + chrono::Duration::seconds(5));
    let registry = registry("t", |ctx: OrchestrationContext, _: ()| async move {
        let _: u8 = ctx.call_activity_by_name("instead", ()).await?;
        Ok(())
    });
    let r = durable::orchestration::execute(&registry, &history.request_replaying_all_but(2));
    let message = nondeterminism(&r);
    assert!(
        message.contains("expected timer") && message.contains("activity \"instead\""),
        "{message}"
    );
}
