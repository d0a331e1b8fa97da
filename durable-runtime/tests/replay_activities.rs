//! Replay of activity calls: chains, fan-out/fan-in, typed and by-name calls.

// Helpers outside #[test] fns unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use durable::testing::HistoryBuilder;
use durable::{Activity, ActivityContext, OrchestrationContext, Orchestrator, Registry, Task};
use futures::future::{BoxFuture, LocalBoxFuture};

#[derive(Clone, Copy)]
struct Hello;

impl Activity for Hello {
    type Input = String;
    type Output = String;
    const NAME: &'static str = "hello";
    fn run(_ctx: ActivityContext, input: String) -> BoxFuture<'static, durable::Result<String>> {
        Box::pin(async move { Ok(format!("Hello {input}!")) })
    }
}

/// A hand-written typed orchestrator: three greetings in a chain.
#[derive(Clone, Copy)]
struct Sequence;

impl Orchestrator for Sequence {
    type Input = ();
    type Output = Vec<String>;
    const NAME: &'static str = "sequence";
    fn run(
        ctx: OrchestrationContext,
        _input: (),
    ) -> LocalBoxFuture<'static, durable::Result<Vec<String>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for city in ["Tokyo", "Seattle", "London"] {
                out.push(ctx.call_activity(Hello, city).await?);
            }
            Ok(out)
        })
    }
}

fn sequence_registry() -> Registry {
    let mut registry = Registry::new();
    registry.add_orchestrator::<Sequence>().unwrap();
    registry
}

#[test]
fn first_episode_schedules_the_first_activity_with_id_zero() {
    let mut sim = Sim::new(sequence_registry());
    let response = sim.start("sequence", "null");
    assert_eq!(summary(&response), [(0, "activity", "hello".to_owned())]);
    assert_eq!(activity_inputs(&response), ["\"Tokyo\""]);
    assert_eq!(response.instance_id, "inst-1");
    assert!(response.custom_status.is_none());
}

#[test]
fn typed_chain_runs_to_completion_over_several_episodes() {
    let mut sim = Sim::new(sequence_registry());
    sim.start("sequence", "null");
    let r = sim.episode(vec![task_completed(0, "\"Hello Tokyo!\"")]);
    assert_eq!(summary(&r), [(1, "activity", "hello".to_owned())]);
    assert_eq!(activity_inputs(&r), ["\"Seattle\""]);
    let r = sim.episode(vec![task_completed(1, "\"Hello Seattle!\"")]);
    assert_eq!(summary(&r), [(2, "activity", "hello".to_owned())]);
    let r = sim.episode(vec![task_completed(2, "\"Hello London!\"")]);
    assert_eq!(summary(&r), [(3, "complete", "Completed".to_owned())]);
    assert_eq!(
        output(&r),
        r#"["Hello Tokyo!","Hello Seattle!","Hello London!"]"#
    );
}

#[test]
fn whole_history_in_one_request_completes_without_new_activity_actions() {
    let mut history = HistoryBuilder::new("order-1");
    history
        .orchestrator_started()
        .execution_started("sequence", "null")
        .task_scheduled(0, "hello")
        .orchestrator_started()
        .task_completed(0, "\"a\"")
        .task_scheduled(1, "hello")
        .orchestrator_started()
        .task_completed(1, "\"b\"")
        .task_scheduled(2, "hello")
        .orchestrator_started()
        .task_completed(2, "\"c\"");
    let registry = sequence_registry();
    for new in [2, 1] {
        let r = durable::orchestration::execute(&registry, &history.request_replaying_all_but(new));
        assert_eq!(
            summary(&r),
            [(3, "complete", "Completed".to_owned())],
            "new={new}"
        );
        assert_eq!(output(&r), r#"["a","b","c"]"#);
    }
}

#[test]
fn activity_by_name_serializes_input_and_decodes_output() {
    let registry = registry("calc", |ctx: OrchestrationContext, x: i64| async move {
        let doubled: i64 = ctx
            .call_activity_by_name("double", serde_json::json!({"value": x}))
            .await?;
        Ok(doubled + 1)
    });
    let mut sim = Sim::new(registry);
    let r = sim.start("calc", "20");
    assert_eq!(summary(&r), [(0, "activity", "double".to_owned())]);
    assert_eq!(activity_inputs(&r), [r#"{"value":20}"#]);
    let r = sim.episode(vec![task_completed(0, "40")]);
    assert_eq!(output(&r), "41");
}

#[test]
fn activity_result_of_the_wrong_type_is_a_catchable_task_error() {
    let registry = registry("typed", |ctx: OrchestrationContext, _: ()| async move {
        let r: Result<u32, _> = ctx.call_activity_by_name("f", ()).await;
        match r {
            Err(durable::TaskError::Deserialize { name, .. }) => {
                Ok(format!("bad result of {name}"))
            }
            other => Ok(format!("unexpected {other:?}")),
        }
    });
    let mut sim = Sim::new(registry);
    assert_eq!(activity_inputs(&sim.start("typed", "null")), ["null"]);
    let r = sim.episode(vec![task_completed(0, "\"not a number\"")]);
    assert_eq!(output(&r), "\"bad result of f\"");
}

#[test]
fn missing_activity_result_reads_as_null() {
    let registry = registry("unit", |ctx: OrchestrationContext, _: ()| async move {
        let v: Option<u8> = ctx.call_activity_by_name("f", ()).await?;
        Ok(v.is_none())
    });
    let mut sim = Sim::new(registry);
    sim.start("unit", "null");
    let r = sim.episode(vec![
        durable::proto::history_event::EventType::TaskCompleted(
            durable::proto::TaskCompletedEvent {
                task_scheduled_id: 0,
                result: None,
            },
        ),
    ]);
    assert_eq!(output(&r), "true");
}

fn fan_out(n: usize) -> Registry {
    registry("fan", move |ctx: OrchestrationContext, _: ()| async move {
        let tasks: Vec<Task<u64>> = (0..n as u64)
            .map(|i| ctx.call_activity_by_name("square", i))
            .collect();
        let results = durable::when_all(tasks).await?;
        Ok(results)
    })
}

#[test]
fn fan_out_schedules_all_tasks_at_once_with_sequential_ids() {
    let mut sim = Sim::new(fan_out(5));
    let r = sim.start("fan", "null");
    let ids: Vec<i32> = summary(&r).iter().map(|a| a.0).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4]);
    assert_eq!(activity_inputs(&r), ["0", "1", "2", "3", "4"]);
}

#[test]
fn fan_in_with_completions_out_of_order_keeps_results_in_call_order() {
    let mut sim = Sim::new(fan_out(5));
    sim.start("fan", "null");
    let r = sim.episode(vec![task_completed(3, "9"), task_completed(0, "0")]);
    assert!(r.actions.is_empty(), "{:?}", summary(&r));
    let r = sim.episode(vec![
        task_completed(4, "16"),
        task_completed(2, "4"),
        task_completed(1, "1"),
    ]);
    assert_eq!(summary(&r), [(5, "complete", "Completed".to_owned())]);
    assert_eq!(output(&r), "[0,1,4,9,16]");
}

#[test]
fn large_fan_out_replays_from_one_history() {
    let n = 2_000;
    let mut history = HistoryBuilder::new("big");
    history
        .orchestrator_started()
        .execution_started("fan", "null");
    for i in 0..n {
        history.task_scheduled(i, "square");
    }
    history.orchestrator_started();
    for i in (0..n).rev() {
        let v = (i as u64) * (i as u64);
        history.task_completed(i, &v.to_string());
    }
    let r = durable::orchestration::execute(
        &fan_out(n as usize),
        &history.request_replaying_all_but(n as usize + 1),
    );
    assert_eq!(summary(&r), [(n, "complete", "Completed".to_owned())]);
    let out: Vec<u64> = serde_json::from_str(&output(&r)).unwrap();
    assert_eq!(out.len(), n as usize);
    assert_eq!(out[1999], 1999 * 1999);
}

#[test]
fn completion_for_an_unknown_task_is_ignored() {
    let mut sim = Sim::new(sequence_registry());
    sim.start("sequence", "null");
    let r = sim.episode(vec![task_completed(42, "\"stray\"")]);
    assert!(r.actions.is_empty());
    let r = sim.episode(vec![task_completed(0, "\"x\"")]);
    assert_eq!(summary(&r), [(1, "activity", "hello".to_owned())]);
}

#[test]
fn duplicate_completion_of_one_task_keeps_the_first_result() {
    let registry = registry("dup", |ctx: OrchestrationContext, _: ()| async move {
        let a: String = ctx.call_activity_by_name("a", ()).await?;
        let b: String = ctx.call_activity_by_name("b", ()).await?;
        Ok(format!("{a}{b}"))
    });
    let mut sim = Sim::new(registry);
    sim.start("dup", "null");
    sim.episode(vec![task_completed(0, "\"1\""), task_completed(0, "\"2\"")]);
    let r = sim.episode(vec![task_completed(1, "\"3\"")]);
    assert_eq!(output(&r), "\"13\"");
}
