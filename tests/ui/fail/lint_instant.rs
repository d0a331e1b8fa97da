#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    let _start = std::time::Instant::now();
    let _ = ctx;
    Ok(())
}

fn main() {}
