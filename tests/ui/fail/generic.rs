#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::orchestrator]
async fn flow<T>(_ctx: OrchestrationContext, _input: T) -> durable::Result<()> {
    Ok(())
}

fn main() {}
