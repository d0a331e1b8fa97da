#![allow(dead_code)]

#[durable::orchestrator]
async fn flow() -> durable::Result<()> {
    Ok(())
}

fn main() {}
