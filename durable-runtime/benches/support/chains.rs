//! The three-activity chain the end-to-end benches run, and a driver that keeps `in_flight`
//! of them going until `n` completed.

use std::time::{Duration, Instant};

use durable::DurableClient;
use durable::prelude::*;

#[durable::activity]
async fn hello(_ctx: ActivityContext, city: String) -> String {
    format!("Hello {city}!")
}

/// Greets three cities, one after another.
#[durable::orchestrator]
pub(crate) async fn sequence(ctx: OrchestrationContext, _: ()) -> durable::Result<Vec<String>> {
    let mut out = Vec::new();
    for city in ["Tokyo", "Seattle", "London"] {
        out.push(ctx.call_activity(hello, city.to_string()).await?);
    }
    Ok(out)
}

/// Runs `n` chains, `in_flight` at a time; returns the wall time.
pub(crate) async fn run_chains(
    client: &DurableClient,
    n: usize,
    in_flight: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut lanes = Vec::new();
    for lane in 0..in_flight {
        let client = client.clone();
        lanes.push(tokio::spawn(async move {
            for _ in (lane..n).step_by(in_flight) {
                let id = client.schedule_new_orchestration(sequence, ()).await?;
                client
                    .wait_for_orchestration_completion(&id, Duration::from_secs(120))
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for lane in lanes {
        lane.await??;
    }
    Ok(started.elapsed())
}
