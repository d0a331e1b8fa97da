#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    std::thread::spawn(|| {});
    let _ = ctx;
    Ok(())
}

fn main() {}
