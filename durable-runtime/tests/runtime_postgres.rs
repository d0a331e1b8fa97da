//! The embedded sidecar on PostgreSQL: `Runtime::builder().postgres(url)` runs orchestrations
//! end to end, and state outlives the runtime (`DURABLE_POSTGRES` is tested with the examples).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "../../durable-sidecar/tests/sidecar_common/postgres.rs"]
mod postgres;

use std::time::Duration;

use durable::client::RuntimeStatus;
use durable::prelude::*;

#[durable::activity]
async fn greet(_ctx: ActivityContext, city: String) -> String {
    format!("Hello {city}!")
}

#[durable::orchestrator]
async fn greetings(ctx: OrchestrationContext, _: ()) -> durable::Result<Vec<String>> {
    let mut out = Vec::new();
    for city in ["Tokyo", "Seattle", "London"] {
        out.push(ctx.call_activity(greet, city.to_string()).await?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrations_run_on_postgres_and_outlive_the_runtime() {
    let Some(pg) = postgres::TempPostgres::start() else {
        return;
    };
    let url = pg.database("runtime");
    let runtime = durable::Runtime::builder()
        .ignore_environment()
        .postgres(&url)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let id = client
        .schedule_new_orchestration(greetings, ())
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed);
    assert_eq!(
        state.output::<Vec<String>>().unwrap(),
        ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
    );
    runtime.shutdown().await;

    // A new program on the same database sees the finished instance.
    let runtime = durable::Runtime::builder()
        .ignore_environment()
        .postgres(&url)
        .start()
        .await
        .unwrap();
    let state = runtime
        .client()
        .get_orchestration_state(&id)
        .await
        .unwrap()
        .expect("the instance is in the database");
    assert_eq!(state.runtime_status, RuntimeStatus::Completed);
    runtime.shutdown().await;
}
