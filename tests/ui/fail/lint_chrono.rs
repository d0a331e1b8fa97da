#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    let _now = chrono::Utc::now();
    let _ = ctx;
    Ok(())
}

fn main() {}
