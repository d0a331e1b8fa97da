//! Scheduled execution, two ways: an orchestrator that sleeps until a given time computed
//! from `ctx.current_utc_datetime()`, and a client-side scheduled start.
//!
//! Run it with `cargo run --example scheduled`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use durable::prelude::*;

/// The work to do at the scheduled time; reports when it ran.
#[durable::activity]
async fn scheduled_activity(_ctx: ActivityContext, label: String) -> String {
    format!("{label} ran at {}", Utc::now().format("%H:%M:%S%.3f"))
}

/// Waits until `scheduled_time` (if it is in the future), then runs the activity.
#[durable::orchestrator]
async fn scheduled_workflow(
    ctx: OrchestrationContext,
    scheduled_time: DateTime<Utc>,
) -> durable::Result<String> {
    let delay = scheduled_time - ctx.current_utc_datetime();
    if delay > chrono::Duration::zero() {
        ctx.create_timer_at(scheduled_time).await?;
    }
    Ok(ctx
        .call_activity(scheduled_activity, "timer-scheduled work".to_owned())
        .await?)
}

/// Runs the activity as soon as it starts (its start is what gets scheduled).
#[durable::orchestrator]
async fn run_now(ctx: OrchestrationContext, _input: ()) -> durable::Result<String> {
    Ok(ctx
        .call_activity(scheduled_activity, "start-scheduled work".to_owned())
        .await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = durable::run().await?;
    let client = runtime.client();

    let at = Utc::now() + chrono::Duration::seconds(2);
    println!("Scheduling work for {}", at.format("%H:%M:%S%.3f"));
    let timer_id = client
        .schedule_new_orchestration(scheduled_workflow, at)
        .await?;

    let start_at = Utc::now() + chrono::Duration::seconds(2);
    let options = durable::client::ScheduleOptions::new().start_at(start_at);
    let start_id = client
        .schedule_new_orchestration_with(run_now, (), options)
        .await?;
    println!("Start scheduled for {}", start_at.format("%H:%M:%S%.3f"));

    for id in [timer_id, start_id] {
        let state = client
            .wait_for_orchestration_completion(&id, Duration::from_secs(60))
            .await?;
        let result: String = state.output()?;
        let on_time = Utc::now() >= at;
        println!(
            "Orchestration completed! Result: {result} (not before the scheduled time: {on_time})"
        );
    }

    runtime.shutdown().await;
    Ok(())
}
