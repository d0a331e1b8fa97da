#![allow(dead_code)]
use durable::OrchestrationContext;

use std::fs;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    let _config = fs::read_to_string("config.toml");
    let _ = ctx;
    Ok(())
}

fn main() {}
