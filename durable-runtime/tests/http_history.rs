//! The HTTP API routes the dashboard relies on, on the embedded runtime: an instance's history
//! as JSON, rewind, restart, name and creation-time filters, and who may load the dashboard's
//! files and call the API (token, foreign `Origin`).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use durable::RuntimeStatus;
use durable::prelude::*;
use reqwest::StatusCode;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

#[durable::activity]
async fn hello(name: String) -> String {
    format!("Hello, {name}!")
}

#[durable::orchestrator]
async fn greet(ctx: OrchestrationContext, name: String) -> durable::Result<String> {
    Ok(ctx.call_activity(hello, name).await?)
}

static FAILED_ONCE: AtomicBool = AtomicBool::new(false);

/// Fails on its first run, succeeds on every later one.
#[durable::activity]
async fn flaky(value: u32) -> durable::Result<u32> {
    if FAILED_ONCE.swap(true, Ordering::SeqCst) {
        Ok(value * 2)
    } else {
        Err(durable::Error::msg("the first attempt fails"))
    }
}

#[durable::orchestrator]
async fn double(ctx: OrchestrationContext, value: u32) -> durable::Result<u32> {
    Ok(ctx.call_activity(flaky, value).await?)
}

#[durable::orchestrator]
async fn wait_forever(ctx: OrchestrationContext, _input: ()) -> durable::Result<String> {
    Ok(ctx.wait_for_external_event::<String>("never").await?)
}

async fn start_runtime() -> (durable::RuntimeHandle, String) {
    let runtime = durable::Runtime::builder()
        .ignore_environment()
        .in_memory()
        .http("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", runtime.http_addr().unwrap());
    (runtime, base)
}

async fn json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_json_events_that_pair_up() {
    let (runtime, base) = start_runtime().await;
    let client = runtime.client();
    let id = client
        .schedule_new_orchestration(greet, "Ada")
        .await
        .unwrap();
    client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();

    let (status, body) = json(
        reqwest::get(format!("{base}/api/instances/{id}/history"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["instanceId"], id.as_str());
    let events = body["events"].as_array().unwrap();
    let of = |kind: &str| {
        events
            .iter()
            .find(|e| e["eventType"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {body:#}"))
    };
    assert_eq!(of("ExecutionStarted")["name"], "greet");
    assert_eq!(of("ExecutionStarted")["input"], "Ada");
    let scheduled = of("TaskScheduled");
    assert_eq!(scheduled["name"], "hello");
    assert_eq!(of("TaskCompleted")["taskScheduledId"], scheduled["eventId"]);
    assert_eq!(of("TaskCompleted")["result"], "Hello, Ada!");
    assert_eq!(of("ExecutionCompleted")["runtimeStatus"], "Completed");
    assert!(
        events.iter().all(|e| e["timestamp"].is_string()),
        "{body:#}"
    );

    let (status, body) = json(
        reqwest::get(format!("{base}/api/instances/nope/history"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_and_restart_over_http() {
    let (runtime, base) = start_runtime().await;
    let client = runtime.client();
    let http = reqwest::Client::new();

    let failed = client.schedule_new_orchestration(double, 21).await.unwrap();
    let state = client
        .wait_for_orchestration_completion(&failed, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Failed, "{state:?}");
    let response = http
        .post(format!("{base}/api/instances/{failed}/rewind?reason=retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let state = client
        .wait_for_orchestration_completion(&failed, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
    assert_eq!(state.output::<u32>().unwrap(), 42);

    // Only Failed instances rewind; unknown ones are 404.
    let (status, body) = json(
        http.post(format!("{base}/api/instances/{failed}/rewind"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("is Completed"),
        "{body}"
    );
    let response = http
        .post(format!("{base}/api/instances/nope/rewind"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Restart under the same id, then under a new one.
    let (status, body) = json(
        http.post(format!("{base}/api/instances/{failed}/restart"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["id"], failed.as_str());
    let state = client
        .wait_for_orchestration_completion(&failed, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
    let response = http
        .post(format!(
            "{base}/api/instances/{failed}/restart?newInstanceId=true"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (_, body) = json(response).await;
    let fresh = body["id"].as_str().unwrap().to_owned();
    assert_ne!(fresh, failed);
    assert!(
        location.ends_with(&format!("/api/instances/{fresh}")),
        "{location}"
    );
    let state = client
        .wait_for_orchestration_completion(&fresh, WAIT)
        .await
        .unwrap();
    assert_eq!(state.output::<u32>().unwrap(), 42);

    // A running instance restarts only under a new id.
    let running = client
        .schedule_new_orchestration(wait_forever, ())
        .await
        .unwrap();
    client
        .wait_for_orchestration_start(&running, WAIT)
        .await
        .unwrap();
    let (status, body) = json(
        http.post(format!("{base}/api/instances/{running}/restart"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("newInstanceId=true"),
        "{body}"
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_by_name_and_creation_time() {
    let (runtime, base) = start_runtime().await;
    let client = runtime.client();
    for name in ["a", "b", "c"] {
        let id = client
            .schedule_new_orchestration_with(
                greet,
                name,
                ScheduleOptions::new().instance_id(format!("greet-{name}")),
            )
            .await
            .unwrap();
        client
            .wait_for_orchestration_completion(&id, WAIT)
            .await
            .unwrap();
    }
    let other = client
        .schedule_new_orchestration_with(
            wait_forever,
            (),
            ScheduleOptions::new().instance_id("wait-1"),
        )
        .await
        .unwrap();
    client
        .wait_for_orchestration_start(&other, WAIT)
        .await
        .unwrap();
    let ids = |body: &Value| -> Vec<String> {
        body["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["instanceId"].as_str().unwrap().to_owned())
            .collect()
    };

    let (status, body) = json(
        reqwest::get(format!("{base}/api/instances?name=gre"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut all = ids(&body);
    all.sort();
    assert_eq!(all, ["greet-a", "greet-b", "greet-c"]);

    // Pages of one: never more than asked, and the token leads on.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let (status, body) = json(
            reqwest::get(format!(
                "{base}/api/instances?name=greet&pageSize=1&continuationToken={token}"
            ))
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page = ids(&body);
        assert!(page.len() <= 1, "{body}");
        seen.extend(page);
        match body["continuationToken"].as_str() {
            Some(next) => token = next.to_owned(),
            None => break,
        }
        assert!(seen.len() <= 3, "{seen:?}");
    }
    seen.sort();
    assert_eq!(seen, ["greet-a", "greet-b", "greet-c"]);

    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, body) = json(
        reqwest::Client::new()
            .get(format!("{base}/api/instances"))
            .query(&[("createdFrom", future.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(ids(&body).is_empty(), "{body}");
    let (status, body) = json(
        reqwest::get(format!("{base}/api/instances?createdFrom=yesterday"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("RFC 3339"),
        "{body}"
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_files_load_without_the_token_and_foreign_pages_cannot_act() {
    let (runtime, base) = start_runtime().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The runtime's API: `/` leads to the dashboard; its files carry a strict policy.
    let response = no_redirects.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], "dashboard/");
    let response = no_redirects
        .get(format!("{base}/dashboard/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert!(response.text().await.unwrap().contains("app.js"));
    let response = no_redirects
        .get(format!("{base}/dashboard/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let etag = response.headers()["etag"].clone();
    let response = no_redirects
        .get(format!("{base}/dashboard/app.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);

    // A page of another site cannot make the visitor's browser act; the dashboard's own can.
    let response = no_redirects
        .post(format!("{base}/api/instances/nope/terminate"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = no_redirects
        .post(format!("{base}/api/instances/nope/terminate"))
        .header("origin", base.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Behind a token: the files load, the API needs the token.
    let serve = |options: durable::http::HttpOptions| {
        let client = runtime.client();
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(durable::http::serve_with_options(
                listener,
                client,
                options,
                std::future::pending(),
            ));
            base
        }
    };
    let guarded = serve(durable::http::HttpOptions::new().bearer_token("s3cret")).await;
    for path in ["/dashboard/", "/dashboard/style.css", "/"] {
        let response = no_redirects
            .get(format!("{guarded}{path}"))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success() || response.status().is_redirection(),
            "{path}: {}",
            response.status()
        );
    }
    let response = no_redirects
        .get(format!("{guarded}/api/instances"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = no_redirects
        .get(format!("{guarded}/api/instances"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Without the dashboard, its paths are 404.
    let bare = serve(durable::http::HttpOptions::new().dashboard(false)).await;
    let response = no_redirects.get(format!("{bare}/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = no_redirects
        .get(format!("{bare}/dashboard/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    runtime.shutdown().await;
}
