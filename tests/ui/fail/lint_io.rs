#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    let _conn = std::net::TcpStream::connect("127.0.0.1:80");
    let _ = ctx;
    Ok(())
}

fn main() {}
