//! Eternal orchestration: continue-as-new restarts the orchestration with a fresh history
//! after each iteration, so a process that runs forever keeps a bounded history. An event
//! raised during the first iteration is carried over (`save_events`) to the last one.
//!
//! Run it with `cargo run --example eternal`.

use std::time::Duration;

use durable::prelude::*;
use serde::{Deserialize, Serialize};

/// The orchestration's input: where it is and where it stops (a real one would not stop).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Progress {
    iteration: u32,
    last: u32,
}

/// The periodic work.
#[durable::activity]
async fn periodic_work(_ctx: ActivityContext, iteration: u32) -> String {
    format!("work of iteration {iteration} done")
}

/// One iteration, then continue-as-new with the next iteration number.
#[durable::orchestrator]
async fn eternal_orchestration(
    ctx: OrchestrationContext,
    progress: Progress,
) -> durable::Result<String> {
    ctx.set_custom_status(&progress.iteration);
    ctx.call_activity(periodic_work, progress.iteration).await?;
    ctx.create_timer(Duration::from_secs(1)).await?;

    if progress.iteration < progress.last {
        let next = Progress {
            iteration: progress.iteration + 1,
            ..progress
        };
        // Keep unconsumed events (the note raised during iteration 1) for the next execution.
        ctx.continue_as_new(&next, true);
        return Ok(String::new());
    }

    let note: Task<String> = ctx.wait_for_external_event("note");
    let timeout = ctx.create_timer(Duration::from_secs(5));
    let note = match durable::when_any([note.handle(), timeout.handle()]).await {
        0 => note.await?,
        _ => "(no note arrived)".to_owned(),
    };
    Ok(format!(
        "finished after {} iterations; note carried over: {note}",
        progress.iteration
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = durable::run().await?;
    let client = runtime.client();

    let id = client
        .schedule_new_orchestration(
            eternal_orchestration,
            Progress {
                iteration: 1,
                last: 4,
            },
        )
        .await?;
    println!("Orchestration scheduled with ID: {id}");
    client
        .wait_for_orchestration_start(&id, Duration::from_secs(30))
        .await?;
    client
        .raise_orchestration_event(&id, "note", &"raised during iteration 1")
        .await?;

    let mut seen = 0;
    loop {
        let Some(state) = client.get_orchestration_state(&id).await? else {
            anyhow::bail!("instance {id} disappeared");
        };
        let iteration: u32 = state.custom_status().unwrap_or(0);
        if iteration > seen {
            seen = iteration;
            let history = client.get_history(&id).await?;
            println!(
                "iteration {iteration}: history holds {} events (bounded by continue-as-new)",
                history.len()
            );
        }
        if state.runtime_status.is_terminal() {
            let result: String = state.output()?;
            println!("Orchestration completed! Result: {result}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    runtime.shutdown().await;
    Ok(())
}
