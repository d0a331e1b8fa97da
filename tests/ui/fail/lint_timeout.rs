#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {}).await;
    let _ = ctx;
    Ok(())
}

fn main() {}
