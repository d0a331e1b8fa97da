#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    std::thread::sleep(std::time::Duration::from_secs(1));
    let _ = ctx;
    Ok(())
}

fn main() {}
