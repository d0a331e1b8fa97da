//! `/metrics` on the embedded runtime's HTTP port: Prometheus text with the sidecar's
//! counters, latency histograms and gauges, after real work.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use durable::prelude::*;

#[durable::activity]
async fn shout(text: String) -> String {
    text.to_uppercase()
}

#[durable::orchestrator]
async fn loud(ctx: OrchestrationContext, text: String) -> durable::Result<String> {
    Ok(ctx.call_activity(shout, text).await?)
}

/// The value of the sample `name` (with its labels, as printed).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample `{name}` in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_work_latency_and_queues() {
    let dir = std::env::temp_dir().join(format!("durable-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let runtime = durable::Runtime::builder()
        .ignore_environment()
        .database(dir.join("metrics.db"))
        .http("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    for word in ["a", "b", "c"] {
        let id = client.schedule_new_orchestration(loud, word).await.unwrap();
        client
            .wait_for_orchestration_completion(&id, Duration::from_secs(20))
            .await
            .unwrap();
    }
    let base = format!("http://{}", runtime.http_addr().unwrap());
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();

    // Each orchestration: two episodes (start, activity result) and one activity.
    let dispatched = |kind: &str| {
        sample(
            &text,
            &format!("durable_work_items_dispatched_total{{kind=\"{kind}\"}}"),
        )
    };
    assert!(dispatched("orchestration") >= 6.0, "{text}");
    assert!(dispatched("activity") >= 3.0, "{text}");
    assert!(
        sample(
            &text,
            "durable_work_items_completed_total{kind=\"activity\"}"
        ) >= 3.0,
        "{text}"
    );
    assert!(
        sample(&text, "durable_episode_seconds_count") >= 6.0,
        "{text}"
    );
    assert!(
        sample(&text, "durable_storage_commit_seconds_count") >= 1.0,
        "{text}"
    );
    assert_eq!(sample(&text, "durable_connected_workers"), 1.0, "{text}");
    assert_eq!(
        sample(&text, "durable_queued_work_items{kind=\"orchestration\"}"),
        0.0,
        "{text}"
    );
    assert!(text.contains("# HELP durable_instances "), "{text}");
    runtime.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
