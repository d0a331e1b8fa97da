//! Versioning: one worker serves instances scheduled with version 1.0.0 and 2.0.0; the
//! orchestrator reads `ctx.version()` and picks the code path with `compare_versions`, so
//! running v1 instances keep replaying the v1 path after v2 code is deployed.
//!
//! Run it with `cargo run --example versioning`.

use std::time::Duration;

use durable::prelude::*;
use serde::{Deserialize, Serialize};

/// Says hello (v1 and later).
#[durable::activity]
async fn say_hello(_ctx: ActivityContext, name: String) -> String {
    format!("Hello, {name}!")
}

/// Says goodbye (added in v2).
#[durable::activity]
async fn say_goodbye(_ctx: ActivityContext, name: String) -> String {
    format!("Goodbye, {name}!")
}

/// What each version returns.
#[derive(Debug, Serialize, Deserialize)]
struct Outcome {
    version: String,
    results: Vec<String>,
}

/// v1.0.0: hello. v2.0.0: hello, then goodbye.
#[durable::orchestrator]
async fn versioned_orchestration(
    ctx: OrchestrationContext,
    name: String,
) -> durable::Result<Outcome> {
    let version = ctx.version();
    let mut results = vec![ctx.call_activity(say_hello, name.clone()).await?];
    if durable::compare_versions(&version, "2.0.0").is_ge() {
        results.push(ctx.call_activity(say_goodbye, name).await?);
    }
    Ok(Outcome { version, results })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = durable::run().await?;
    let client = runtime.client();

    for version in ["1.0.0", "2.0.0"] {
        let options = durable::client::ScheduleOptions::new().version(version);
        let id = client
            .schedule_new_orchestration_with(versioned_orchestration, "Rust".to_owned(), options)
            .await?;
        let state = client
            .wait_for_orchestration_completion(&id, Duration::from_secs(60))
            .await?;
        let outcome: Outcome = state.output()?;
        println!("version {}: {:?}", outcome.version, outcome.results);
    }

    runtime.shutdown().await;
    Ok(())
}
