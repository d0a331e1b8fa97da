//! The HTTP API's entity routes on the embedded runtime: signal over HTTP, read the state,
//! list entities, and clear errors for bad input.

use std::time::Duration;

use durable::Registry;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .add_entity_fn("counter", |ctx, op| {
            Box::pin(async move {
                let value: i64 = ctx.get_state()?.unwrap_or(0);
                if op.is("add") {
                    ctx.set_state(&(value + op.input::<i64>()?))?;
                    Ok(None)
                } else {
                    Err(op.unknown("counter"))
                }
            })
        })
        .expect("one entity");
    registry
}

#[tokio::test]
async fn signal_read_and_list_entities_over_http() {
    let runtime = durable::Runtime::builder()
        .ignore_environment()
        .in_memory()
        .registry(registry())
        .http("127.0.0.1:0".parse().expect("an address"))
        .start()
        .await
        .expect("the runtime starts");
    let base = format!("http://{}", runtime.http_addr().expect("the HTTP API runs"));
    let http = reqwest::Client::new();

    let response = http
        .post(format!("{base}/api/entities/Counter/c1?op=add"))
        .json(&5)
        .send()
        .await
        .expect("signal");
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let entity: Value = loop {
        let response = http
            .get(format!("{base}/api/entities/counter/c1"))
            .send()
            .await
            .expect("get");
        if response.status() == StatusCode::OK {
            break response.json().await.expect("JSON");
        }
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the signal never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(entity["entityId"], "@counter@c1");
    assert_eq!(entity["state"], json!(5));
    assert_eq!(entity["backlogQueueSize"], json!(0));

    let list: Value = http
        .get(format!("{base}/api/entities?name=counter"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    assert_eq!(list["entities"][0]["key"], "c1");
    assert_eq!(list["entities"][0]["state"], json!(5));

    for (url, expected) in [
        (format!("{base}/api/entities/counter/c1"), "?op=OPERATION"),
        (
            format!("{base}/api/entities/counter/a@b?op=add"),
            "the key contains `@`",
        ),
    ] {
        let response = http.post(url).json(&1).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value = response.json().await.expect("JSON error");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains(expected),
            "{body}"
        );
    }
    let response = http
        .get(format!("{base}/api/entities/counter/none"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    runtime.shutdown().await;
}

#[tokio::test]
async fn the_runtimes_http_api_refuses_orchestrators_it_did_not_register() {
    let runtime = durable::Runtime::builder()
        .ignore_environment()
        .in_memory()
        .registry(registry())
        .http("127.0.0.1:0".parse().expect("an address"))
        .start()
        .await
        .expect("the runtime starts");
    let base = format!("http://{}", runtime.http_addr().expect("the HTTP API runs"));
    let response = reqwest::Client::new()
        .post(format!("{base}/api/orchestrators/nope"))
        .json(&1)
        .send()
        .await
        .expect("start");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.expect("JSON");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("no orchestrator named 'nope'")),
        "{body}"
    );
    runtime.shutdown().await;
}
