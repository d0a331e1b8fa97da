#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    let _a = std::time::Instant::now();
    let _b = uuid::Uuid::new_v4();
    let _ = ctx;
    Ok(())
}

fn main() {}
