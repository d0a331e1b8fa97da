//! Replay of sub-orchestrations: typed calls, instance ids, versions, failures.

// Helpers outside #[test] fns unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use durable::proto::orchestrator_action::OrchestratorActionType;
use durable::{OrchestrationContext, Orchestrator, Registry, SubOrchestratorOptions};
use futures::future::LocalBoxFuture;

#[derive(Clone, Copy)]
struct Child;

impl Orchestrator for Child {
    type Input = u32;
    type Output = u32;
    const NAME: &'static str = "child";
    fn run(
        _ctx: OrchestrationContext,
        input: u32,
    ) -> LocalBoxFuture<'static, durable::Result<u32>> {
        Box::pin(async move { Ok(input * 10) })
    }
}

fn parent_registry() -> Registry {
    let mut registry = Registry::new();
    registry.add_orchestrator::<Child>().unwrap();
    add(
        &mut registry,
        "parent",
        |ctx: OrchestrationContext, _: ()| async move {
            let a = ctx.call_sub_orchestrator(Child, 1u32).await?;
            let b = ctx
                .call_sub_orchestrator_with(
                    Child,
                    2u32,
                    SubOrchestratorOptions::new()
                        .instance_id("kid-2")
                        .version("1.1"),
                )
                .await?;
            Ok(a + b)
        },
    );
    registry
}

fn create_action(
    r: &durable::proto::OrchestratorResponse,
) -> durable::proto::CreateSubOrchestrationAction {
    match r.actions[0].orchestrator_action_type.clone().unwrap() {
        OrchestratorActionType::CreateSubOrchestration(c) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn typed_sub_orchestration_gets_a_deterministic_generated_instance_id() {
    let mut sim = Sim::new(parent_registry());
    let r = sim.start("parent", "null");
    let create = create_action(&r);
    assert_eq!(r.actions[0].id, 0);
    assert_eq!(create.name, "child");
    assert_eq!(create.input.as_deref(), Some("1"));
    assert!(
        create.instance_id.starts_with("inst-1:"),
        "{}",
        create.instance_id
    );
    // The same history replayed produces the same child id (Sim checks no new actions).
    let mut again = Sim::new(parent_registry());
    assert_eq!(
        create_action(&again.start("parent", "null")).instance_id,
        create.instance_id
    );
}

#[test]
fn sub_orchestration_with_instance_id_and_version_options() {
    let mut sim = Sim::new(parent_registry());
    sim.start("parent", "null");
    let r = sim.episode(vec![sub_completed(0, "10")]);
    let create = create_action(&r);
    assert_eq!(r.actions[0].id, 1);
    assert_eq!(create.instance_id, "kid-2");
    assert_eq!(create.version.as_deref(), Some("1.1"));
    assert_eq!(create.input.as_deref(), Some("2"));
    let r = sim.episode(vec![sub_completed(1, "20")]);
    assert_eq!(output(&r), "30");
}

#[test]
fn child_sees_its_parent_instance_id() {
    let registry = registry("kid", |ctx: OrchestrationContext, _: ()| async move {
        Ok(ctx.parent_instance_id())
    });
    let mut history = durable::testing::HistoryBuilder::new("p:1");
    history.orchestrator_started().push(
        -1,
        durable::proto::history_event::EventType::ExecutionStarted(
            durable::proto::ExecutionStartedEvent {
                name: "kid".into(),
                input: Some("null".into()),
                parent_instance: Some(durable::proto::ParentInstanceInfo {
                    task_scheduled_id: 3,
                    orchestration_instance: Some(durable::proto::OrchestrationInstance {
                        instance_id: "p".into(),
                        execution_id: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
    );
    let r = durable::orchestration::execute(&registry, &history.request_all_new());
    assert_eq!(output(&r), "\"p\"");
}

#[test]
fn failed_child_surfaces_as_task_error_with_details() {
    let registry = registry("p", |ctx: OrchestrationContext, _: ()| async move {
        let r: Result<u32, _> = ctx
            .call_sub_orchestrator_by_name(
                "child",
                5,
                SubOrchestratorOptions::new().instance_id("c"),
            )
            .await;
        match r {
            Err(durable::TaskError::Failed { name, details }) => Ok(format!(
                "{name}: {} {}",
                details.error_type, details.message
            )),
            other => Ok(format!("{other:?}")),
        }
    });
    let mut sim = Sim::new(registry);
    sim.start("p", "null");
    let r = sim.episode(vec![sub_failed(0, "ChildError", "boom")]);
    assert_eq!(output(&r), "\"child: ChildError boom\"");
}

#[test]
fn uncaught_child_failure_fails_the_parent_with_the_cause() {
    let registry = registry("p", |ctx: OrchestrationContext, _: ()| async move {
        let v: u32 = ctx
            .call_sub_orchestrator_by_name("child", 5, SubOrchestratorOptions::new())
            .await?;
        Ok(v)
    });
    let mut sim = Sim::new(registry);
    sim.start("p", "null");
    let r = sim.episode(vec![sub_failed(0, "ChildError", "boom")]);
    let f = failure(&r);
    assert_eq!(f.error_type, "durable::TaskError");
    assert!(f.error_message.contains("boom"), "{}", f.error_message);
    let inner = f.inner_failure.unwrap();
    assert_eq!(inner.error_type, "ChildError");
    assert_eq!(inner.error_message, "boom");
    assert_eq!(r.actions.len(), 1);
}
