#![allow(dead_code)]

#[durable::orchestrator]
async fn flow(n: u32) -> durable::Result<u32> {
    Ok(n)
}

fn main() {}
