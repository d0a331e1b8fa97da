#![allow(dead_code)]
use durable::ActivityContext;

#[durable::orchestrator]
async fn flow(_ctx: ActivityContext) -> durable::Result<()> {
    Ok(())
}

fn main() {}
