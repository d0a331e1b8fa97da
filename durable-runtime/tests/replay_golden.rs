//! Golden histories written with `HistoryBuilder`, replayed in one request, plus the typed
//! retry entry points and `execute_orchestrator`.

// Helpers outside #[test] fns unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use durable::testing::HistoryBuilder;
use durable::{
    Activity, ActivityContext, OrchestrationContext, Orchestrator, Registry, RetryPolicy,
    SubOrchestratorOptions,
};
use futures::future::{BoxFuture, LocalBoxFuture};

#[derive(Clone, Copy)]
struct Charge;

impl Activity for Charge {
    type Input = u32;
    type Output = String;
    const NAME: &'static str = "charge";
    fn run(_ctx: ActivityContext, cents: u32) -> BoxFuture<'static, durable::Result<String>> {
        Box::pin(async move { Ok(format!("charged {cents}")) })
    }
}

#[derive(Clone, Copy)]
struct Ship;

impl Orchestrator for Ship {
    type Input = String;
    type Output = String;
    const NAME: &'static str = "ship";
    fn run(
        _ctx: OrchestrationContext,
        to: String,
    ) -> LocalBoxFuture<'static, durable::Result<String>> {
        Box::pin(async move { Ok(format!("shipped to {to}")) })
    }
}

/// Every context feature in one orchestrator.
#[derive(Clone, Copy)]
struct Order;

impl Orchestrator for Order {
    type Input = u32;
    type Output = Vec<String>;
    const NAME: &'static str = "order";
    fn run(
        ctx: OrchestrationContext,
        cents: u32,
    ) -> LocalBoxFuture<'static, durable::Result<Vec<String>>> {
        Box::pin(async move {
            let policy = RetryPolicy::new(2, Duration::from_secs(10));
            let charged = ctx
                .call_activity_with_retry(Charge, cents, policy.clone())
                .await?;
            ctx.set_custom_status(&"charged");
            let approval: String = ctx.wait_for_external_event("approve").await?;
            ctx.send_event("audit", "charged", &cents);
            let shipped = ctx
                .call_sub_orchestrator_with(
                    Ship,
                    approval.clone(),
                    SubOrchestratorOptions::new()
                        .instance_id("ship-1")
                        .retry(policy),
                )
                .await?;
            Ok(vec![charged, approval, shipped])
        })
    }
}

fn golden() -> HistoryBuilder {
    let mut h = HistoryBuilder::new("order-9");
    let t = h.now();
    h.orchestrator_started()
        .execution_started("order", "250")
        .task_scheduled(0, "charge")
        .orchestrator_started()
        .task_failed(0, "Timeout", "gateway slow")
        .timer_created(1, t + chrono::Duration::seconds(11))
        .orchestrator_started_at(t + chrono::Duration::seconds(11))
        .timer_fired(1, t + chrono::Duration::seconds(11))
        .task_scheduled(2, "charge")
        .orchestrator_started()
        .task_completed(2, "\"charged 250\"")
        .orchestrator_started()
        .suspended()
        .event_raised("Approve", "\"Tokyo\"")
        .orchestrator_started()
        .resumed()
        .event_sent(3, "audit", "charged")
        .sub_orchestration_created(4, "ship", "ship-1")
        .orchestrator_started()
        .sub_orchestration_completed(4, "\"shipped to Tokyo\"");
    h
}

fn order_registry() -> Registry {
    let mut registry = Registry::new();
    registry.add_orchestrator::<Order>().unwrap();
    registry.add_orchestrator::<Ship>().unwrap();
    registry.add_activity::<Charge>().unwrap();
    registry
}

#[test]
fn golden_history_replays_to_the_same_result_at_every_split() {
    let history = golden();
    let total = history.events().len();
    // Every split of past/new events that starts the new part at an episode start.
    for new in 1..=total {
        let request = history.request_replaying_all_but(new);
        let first_new = &request.new_events[0];
        if !matches!(
            first_new.event_type,
            Some(durable::proto::history_event::EventType::OrchestratorStarted(_))
        ) {
            continue;
        }
        let r = durable::orchestration::execute(&order_registry(), &request);
        assert_eq!(
            summary(&r),
            [(5, "complete", "Completed".to_owned())],
            "new={new}"
        );
        assert_eq!(
            output(&r),
            r#"["charged 250","Tokyo","shipped to Tokyo"]"#,
            "new={new}"
        );
        assert_eq!(r.custom_status.as_deref(), Some("\"charged\""));
    }
}

#[test]
fn golden_history_cut_short_asks_for_the_next_step() {
    let history = golden();
    // Cut after the resume episode's events: the send and the child are the new actions.
    let events = &history.events()[..history.events().len() - 4];
    let request = durable::proto::OrchestratorRequest {
        instance_id: "order-9".into(),
        past_events: events[..events.len() - 2].to_vec(),
        new_events: events[events.len() - 2..].to_vec(),
        ..Default::default()
    };
    let r = durable::orchestration::execute(&order_registry(), &request);
    assert_eq!(
        summary(&r),
        [
            (3, "send", "audit/charged".to_owned()),
            (4, "sub", "ship@ship-1".to_owned()),
        ]
    );
}

#[test]
fn execute_orchestrator_runs_a_given_function() {
    let f: durable::registry::OrchestratorFn = Arc::new(|ctx: OrchestrationContext, input| {
        Box::pin(async move {
            Ok(Some(format!(
                "\"{}:{}\"",
                ctx.name(),
                input.unwrap_or_default()
            )))
        })
    });
    let mut history = HistoryBuilder::new("x");
    history
        .orchestrator_started()
        .execution_started("any-name", "5");
    let r = durable::orchestration::execute_orchestrator(&f, &history.request_all_new());
    assert_eq!(output(&r), "\"any-name:5\"");
}

#[test]
fn events_raised_before_execution_started_are_buffered() {
    let registry = registry("early", |ctx: OrchestrationContext, _: ()| async move {
        let v: u8 = ctx.wait_for_external_event("e").await?;
        Ok(v)
    });
    let mut history = HistoryBuilder::new("x");
    history
        .orchestrator_started()
        .event_raised("e", "9")
        .execution_started("early", "null");
    let r = durable::orchestration::execute(&registry, &history.request_all_new());
    assert_eq!(output(&r), "9");
}

#[test]
fn events_for_a_completed_orchestration_after_completion_are_ignored() {
    let registry = registry(
        "quick",
        |_ctx: OrchestrationContext, _: ()| async move { Ok(1) },
    );
    let mut history = HistoryBuilder::new("x");
    history
        .orchestrator_started()
        .execution_started("quick", "null")
        .event_raised("late", "1");
    let r = durable::orchestration::execute(&registry, &history.request_all_new());
    assert_eq!(summary(&r), [(0, "complete", "Completed".to_owned())]);
}

#[test]
fn empty_request_does_nothing() {
    let r = durable::orchestration::execute(
        &Registry::new(),
        &durable::proto::OrchestratorRequest::default(),
    );
    assert!(r.actions.is_empty());
}
