//! Context facts: guids, time, replaying flag, custom status, version, ids, logging.

// Helpers outside #[test] fns unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use durable::OrchestrationContext;
use durable::testing::HistoryBuilder;

fn guid_registry() -> durable::Registry {
    registry("guids", |ctx: OrchestrationContext, _: ()| async move {
        let a = ctx.new_guid();
        let b = ctx.new_guid();
        ctx.create_timer(Duration::from_secs(1)).await?;
        let c = ctx.new_guid();
        Ok(vec![a.to_string(), b.to_string(), c.to_string()])
    })
}

#[test]
fn new_guid_is_deterministic_across_replays_and_distinct_per_call() {
    let mut sim = Sim::new(guid_registry());
    sim.start("guids", "null");
    let r = sim.fire_timer(0);
    let first: Vec<String> = serde_json::from_str(&output(&r)).unwrap();
    assert_eq!(first.len(), 3);
    assert_ne!(first[0], first[1]);
    assert_ne!(first[1], first[2]);
    for g in &first {
        let u = uuid::Uuid::parse_str(g).unwrap();
        assert_eq!(u.get_version_num(), 5);
    }
    // Replay the same history again: same guids.
    let mut sim2 = Sim::new(guid_registry());
    sim2.start("guids", "null");
    let r2 = sim2.fire_timer(0);
    assert_eq!(output(&r2), output(&r));
    // Another instance id: different guids.
    let mut sim3 = Sim::new(guid_registry());
    sim3.instance_id = "inst-2".into();
    sim3.start("guids", "null");
    assert_ne!(output(&sim3.fire_timer(0)), output(&r));
}

#[test]
fn current_utc_datetime_is_the_latest_orchestrator_started_timestamp() {
    let registry = registry("clock", |ctx: OrchestrationContext, _: ()| async move {
        let mut times = vec![ctx.current_utc_datetime().to_rfc3339()];
        let _: u8 = ctx.call_activity_by_name("a", ()).await?;
        times.push(ctx.current_utc_datetime().to_rfc3339());
        Ok(times)
    });
    let mut sim = Sim::new(registry);
    sim.start("clock", "null");
    let r = sim.episode(vec![task_completed(0, "1")]);
    let expected = vec![
        t0().to_rfc3339(),
        (t0() + chrono::Duration::seconds(1)).to_rfc3339(),
    ];
    assert_eq!(output(&r), serde_json::to_string(&expected).unwrap());
}

#[test]
fn is_replaying_is_true_for_past_events_and_false_for_new_ones() {
    let registry = registry("replaying", |ctx: OrchestrationContext, _: ()| async move {
        let mut flags = vec![ctx.is_replaying()];
        let _: u8 = ctx.call_activity_by_name("a", ()).await?;
        flags.push(ctx.is_replaying());
        let _: u8 = ctx.call_activity_by_name("b", ()).await?;
        flags.push(ctx.is_replaying());
        Ok(flags)
    });
    let mut sim = Sim::new(registry);
    sim.start("replaying", "null");
    sim.episode(vec![task_completed(0, "1")]);
    let r = sim.episode(vec![task_completed(1, "2")]);
    assert_eq!(output(&r), "[true,true,false]");
}

#[test]
fn custom_status_is_reported_and_replaced() {
    let registry = registry("status", |ctx: OrchestrationContext, _: ()| async move {
        ctx.set_custom_status(&serde_json::json!({"stage": 1}));
        let _: u8 = ctx.call_activity_by_name("a", ()).await?;
        ctx.set_custom_status(&"stage two");
        let _: u8 = ctx.call_activity_by_name("b", ()).await?;
        ctx.clear_custom_status();
        Ok(())
    });
    let mut sim = Sim::new(registry);
    let r = sim.start("status", "null");
    assert_eq!(r.custom_status.as_deref(), Some(r#"{"stage":1}"#));
    let r = sim.episode(vec![task_completed(0, "1")]);
    assert_eq!(r.custom_status.as_deref(), Some("\"stage two\""));
    let r = sim.episode(vec![task_completed(1, "1")]);
    assert_eq!(r.custom_status, None);
    output(&r);
}

#[test]
fn version_instance_id_name_and_execution_id_come_from_history() {
    let registry = registry("facts", |ctx: OrchestrationContext, _: ()| async move {
        let newer = durable::compare_versions(&ctx.version(), "1.5").is_ge();
        Ok(serde_json::json!({
            "version": ctx.version(),
            "newer": newer,
            "instance": ctx.instance_id(),
            "name": ctx.name(),
            "execution": ctx.execution_id(),
            "parent": ctx.parent_instance_id(),
        }))
    });
    for (version, newer) in [(Some("2.0"), true), (Some("1.2"), false), (None, false)] {
        let mut history = HistoryBuilder::new("order-7");
        history
            .orchestrator_started()
            .execution_started_versioned("facts", "null", version);
        let r = durable::orchestration::execute(&registry, &history.request_all_new());
        let v: serde_json::Value = serde_json::from_str(&output(&r)).unwrap();
        assert_eq!(v["version"], version.unwrap_or(""));
        assert_eq!(v["newer"], newer);
        assert_eq!(v["instance"], "order-7");
        assert_eq!(v["name"], "facts");
        assert_eq!(v["execution"], "exec-1");
        assert_eq!(v["parent"], serde_json::Value::Null);
    }
}

#[test]
fn replay_safe_logging_macros_compile_and_run() {
    let registry = registry("logs", |ctx: OrchestrationContext, _: ()| async move {
        durable::info!(ctx, "starting {}", 1);
        durable::debug!(ctx, "debug");
        let _: u8 = ctx.call_activity_by_name("a", ()).await?;
        durable::warn!(ctx, answer = 42, "warned");
        durable::error!(ctx, "error {}", "text");
        Ok("logged")
    });
    let mut sim = Sim::new(registry);
    sim.start("logs", "null");
    let r = sim.episode(vec![task_completed(0, "1")]);
    assert_eq!(output(&r), "\"logged\"");
}

#[test]
fn orchestrator_input_is_decoded_and_output_encoded() {
    #[derive(serde::Deserialize)]
    struct Order {
        id: u32,
        items: Vec<String>,
    }
    let registry = registry("order", |_ctx: OrchestrationContext, o: Order| async move {
        Ok(serde_json::json!({"id": o.id, "count": o.items.len()}))
    });
    let mut sim = Sim::new(registry);
    let r = sim.start("order", r#"{"id":5,"items":["a","b"],"extra":true}"#);
    assert_eq!(output(&r), r#"{"count":2,"id":5}"#);
}
