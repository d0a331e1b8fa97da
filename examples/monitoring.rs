//! Monitoring: poll a job's status on a durable timer until it completes, fails, or the
//! maximum number of attempts is reached.
//!
//! Run it with `cargo run --example monitoring`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use durable::prelude::*;
use serde::{Deserialize, Serialize};

/// Polls made so far (the pretend job finishes on the third poll).
static POLLS: AtomicU32 = AtomicU32::new(0);

/// Reports the job's status: "running" twice, then "completed".
#[durable::activity]
async fn check_job_status(_ctx: ActivityContext, job_id: String) -> String {
    let poll = POLLS.fetch_add(1, Ordering::SeqCst) + 1;
    let status = if poll < 3 { "running" } else { "completed" };
    println!("poll {poll}: job {job_id} is {status}");
    status.to_owned()
}

/// The monitor's verdict.
#[derive(Debug, Serialize, Deserialize)]
struct Verdict {
    status: String,
    attempts: u32,
}

/// Polls up to ten times, one second apart.
#[durable::orchestrator]
async fn monitoring_workflow(
    ctx: OrchestrationContext,
    job_id: String,
) -> durable::Result<Verdict> {
    let max_attempts = 10;
    for attempt in 1..=max_attempts {
        let status = ctx.call_activity(check_job_status, job_id.clone()).await?;
        match status.as_str() {
            "completed" => {
                return Ok(Verdict {
                    status: "success".into(),
                    attempts: attempt,
                });
            }
            "failed" => {
                return Ok(Verdict {
                    status: "failed".into(),
                    attempts: attempt,
                });
            }
            _ => ctx.create_timer(Duration::from_secs(1)).await?,
        }
    }
    Ok(Verdict {
        status: "timeout".into(),
        attempts: max_attempts,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = durable::run().await?;
    let client = runtime.client();

    let id = client
        .schedule_new_orchestration(monitoring_workflow, "job-42".to_owned())
        .await?;
    println!("Orchestration scheduled with ID: {id}");
    let state = client
        .wait_for_orchestration_completion(&id, Duration::from_secs(60))
        .await?;
    let verdict: Verdict = state.output()?;
    println!("Orchestration completed! Result: {verdict:?}");

    runtime.shutdown().await;
    Ok(())
}
