//! Scheduled execution, two ways: an orchestrator that sleeps until a given time computed
//! from `ctx.current_utc_datetime()`, and a client-side scheduled start.
//!
//! Run it with `cargo run --example scheduled`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use durable::prelude::*;
use serde::{Deserialize, Serialize};

/// What the scheduled work reports: which work it was and when it ran.
#[derive(Debug, Serialize, Deserialize)]
struct Ran {
    label: String,
    at: DateTime<Utc>,
}

/// The work to do at the scheduled time; reports when it ran.
#[durable::activity]
async fn scheduled_activity(_ctx: ActivityContext, label: String) -> Ran {
    Ran {
        label,
        at: Utc::now(),
    }
}

/// Waits until `scheduled_time` (if it is in the future), then runs the activity.
#[durable::orchestrator]
async fn scheduled_workflow(
    ctx: OrchestrationContext,
    scheduled_time: DateTime<Utc>,
) -> durable::Result<Ran> {
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
async fn run_now(ctx: OrchestrationContext, _input: ()) -> durable::Result<Ran> {
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

    // Each run is checked against its own scheduled instant, at the moment the work ran.
    for (id, scheduled) in [(timer_id, at), (start_id, start_at)] {
        let state = client
            .wait_for_orchestration_completion(&id, Duration::from_secs(60))
            .await?;
        let ran: Ran = state.output()?;
        let on_time = ran.at >= scheduled;
        println!(
            "Orchestration completed! {} ran at {} (not before the scheduled time: {on_time})",
            ran.label,
            ran.at.format("%H:%M:%S%.3f")
        );
        anyhow::ensure!(
            on_time,
            "{} ran at {}, before its scheduled time {}",
            ran.label,
            ran.at,
            scheduled
        );
    }

    runtime.shutdown().await;
    Ok(())
}
