//! The async HTTP API pattern: start an orchestration with an HTTP POST, get `202 Accepted`
//! and a status URL, and poll that URL until the orchestration is done.
//!
//! Run it with `cargo run --example async_http`. The same API is served by the standalone
//! sidecar with `durable sidecar --http 8080`.

use std::time::Duration;

use durable::prelude::*;

/// A slow report.
#[durable::activity]
async fn build_report(_ctx: ActivityContext, topic: String) -> String {
    tokio::time::sleep(Duration::from_millis(500)).await;
    format!("report on {topic}")
}

/// Builds two reports, with progress in the custom status.
#[durable::orchestrator]
async fn report_workflow(ctx: OrchestrationContext, topic: String) -> durable::Result<Vec<String>> {
    ctx.set_custom_status(&"building the summary");
    let summary = ctx
        .call_activity(build_report, format!("{topic} (summary)"))
        .await?;
    ctx.set_custom_status(&"building the details");
    let details = ctx
        .call_activity(build_report, format!("{topic} (details)"))
        .await?;
    ctx.set_custom_status(&"done");
    Ok(vec![summary, details])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = durable::Runtime::builder()
        .http("127.0.0.1:0".parse()?)
        .start()
        .await?;
    let base = format!(
        "http://{}",
        runtime.http_addr().expect("the HTTP API was enabled")
    );
    println!("HTTP API listening on {base}");

    let http = reqwest::Client::new();
    let response = http
        .post(format!("{base}/api/orchestrators/report_workflow"))
        .json(&"durable execution")
        .send()
        .await?;
    println!(
        "POST /api/orchestrators/report_workflow -> {}",
        response.status()
    );
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no Location header in the 202 response"))?;
    let status_url = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    println!("status URL: {status_url}");

    loop {
        let response = http.get(&status_url).send().await?;
        let code = response.status();
        let body: serde_json::Value = response.json().await?;
        println!(
            "GET status -> {code}: runtimeStatus={} customStatus={}",
            body["runtimeStatus"], body["customStatus"]
        );
        if code == reqwest::StatusCode::OK {
            println!("Orchestration completed! Result: {}", body["output"]);
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    runtime.shutdown().await;
    Ok(())
}
