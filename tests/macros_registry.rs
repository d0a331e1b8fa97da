//! An orchestrator written as a new user would, with typed handles and no manual registration,
//! replays from a history built with `HistoryBuilder`.

use std::time::Duration;

use durable::proto::orchestrator_action::OrchestratorActionType;
use durable::proto::{OrchestrationStatus, OrchestratorAction, OrchestratorResponse};
use durable::testing::HistoryBuilder;
use durable::{ActivityContext, OrchestrationContext, Registry};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Order {
    id: String,
    cents: u64,
}

#[durable::activity]
async fn reserve(ctx: ActivityContext, order: Order) -> Result<String, std::io::Error> {
    Ok(format!("{}-{}", order.id, ctx.task_id()))
}

#[durable::activity(name = "ChargeCard")]
async fn charge(cents: u64) -> durable::Result<String> {
    Ok(format!("charged {cents}"))
}

/// Unit input and output: the generated glue stays clippy-clean.
#[durable::activity]
async fn audit() {}

#[durable::orchestrator]
async fn nightly(ctx: OrchestrationContext) -> durable::Result<()> {
    ctx.call_activity(audit, ()).await?;
    Ok(())
}

/// Reserve, wait for approval, let the customer change their mind for a minute, then charge.
#[durable::orchestrator]
async fn checkout(ctx: OrchestrationContext, order: Order) -> durable::Result<String> {
    let reservation = ctx.call_activity(reserve, order.clone()).await?;
    let approved: bool = ctx.wait_for_external_event("approval").await?;
    if !approved {
        return Ok(format!("{reservation} released"));
    }
    ctx.create_timer(Duration::from_secs(60)).await?;
    let receipt = ctx.call_activity(charge, order.cents).await?;
    Ok(format!("{reservation}, {receipt}"))
}

const ORDER: &str = r#"{"id":"order-7","cents":1250}"#;

fn registry() -> Registry {
    Registry::from_inventory().expect("no duplicate names in this test binary")
}

fn action_type(action: &OrchestratorAction) -> &OrchestratorActionType {
    action
        .orchestrator_action_type
        .as_ref()
        .expect("every action has a type")
}

fn completion(response: &OrchestratorResponse) -> Option<(OrchestrationStatus, Option<&str>)> {
    response
        .actions
        .iter()
        .find_map(|action| match action_type(action) {
            OrchestratorActionType::CompleteOrchestration(c) => {
                Some((c.orchestration_status(), c.result.as_deref()))
            }
            _ => None,
        })
}

#[test]
fn macros_register_without_manual_registration() {
    let registry = registry();
    assert_eq!(
        registry.orchestrator_names().collect::<Vec<_>>(),
        ["checkout", "nightly"]
    );
    assert_eq!(
        registry.activity_names().collect::<Vec<_>>(),
        ["ChargeCard", "audit", "reserve"]
    );
}

#[test]
fn first_episode_schedules_the_typed_activity_call() {
    let mut history = HistoryBuilder::new("checkout-1");
    history
        .orchestrator_started()
        .execution_started("checkout", ORDER);
    let response = durable::orchestration::execute(&registry(), &history.request_all_new());
    assert_eq!(response.actions.len(), 1, "{:?}", response.actions);
    let action = &response.actions[0];
    assert_eq!(action.id, 0);
    match action_type(action) {
        OrchestratorActionType::ScheduleTask(task) => {
            assert_eq!(task.name, "reserve");
            let input: serde_json::Value =
                serde_json::from_str(task.input.as_deref().expect("an input")).unwrap();
            assert_eq!(input, serde_json::json!({"id": "order-7", "cents": 1250}));
        }
        other => panic!("expected ScheduleTask, got {other:?}"),
    }
}

#[test]
fn full_history_replays_to_completion() {
    let mut history = HistoryBuilder::new("checkout-1");
    history
        .orchestrator_started()
        .execution_started("checkout", ORDER)
        .task_scheduled(0, "reserve")
        .orchestrator_started()
        .task_completed(0, "\"order-7-0\"")
        .orchestrator_started()
        .event_raised("approval", "true");
    let fire_at = history.now() + chrono::Duration::seconds(60);
    history
        .timer_created(1, fire_at)
        .orchestrator_started_at(fire_at)
        .timer_fired(1, fire_at)
        .task_scheduled(2, "ChargeCard")
        .orchestrator_started()
        .task_completed(2, "\"charged 1250\"");

    // All at once (as a worker that restarted), then as a last episode after a replay.
    let request = history.request_replaying_all_but(2);
    let response = durable::orchestration::execute(&registry(), &history.request_all_new());
    assert_eq!(
        completion(&response),
        Some((
            OrchestrationStatus::Completed,
            Some("\"order-7-0, charged 1250\"")
        )),
        "{:?}",
        response.actions
    );

    let response = durable::orchestration::execute(&registry(), &request);
    assert_eq!(
        completion(&response),
        Some((
            OrchestrationStatus::Completed,
            Some("\"order-7-0, charged 1250\"")
        ))
    );
}

#[test]
fn rejection_takes_the_other_branch() {
    let mut history = HistoryBuilder::new("checkout-2");
    history
        .orchestrator_started()
        .execution_started("checkout", ORDER)
        .task_scheduled(0, "reserve")
        .orchestrator_started()
        .task_completed(0, "\"order-7-0\"")
        .event_raised("approval", "false");
    let response =
        durable::orchestration::execute(&registry(), &history.request_replaying_all_but(3));
    assert_eq!(
        completion(&response),
        Some((
            OrchestrationStatus::Completed,
            Some("\"order-7-0 released\"")
        ))
    );
}

#[tokio::test]
async fn bodies_are_callable_directly() {
    let ctx = ActivityContext::new("checkout-1", "exec-1", 0, "reserve");
    let order = Order {
        id: "order-7".into(),
        cents: 1,
    };
    assert_eq!(reserve::body(ctx, order).await.unwrap(), "order-7-0");
    assert_eq!(charge::body(5).await.unwrap(), "charged 5");
}
