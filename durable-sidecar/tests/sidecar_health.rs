//! The standard gRPC health service on the sidecar's port: serving while the sidecar can
//! serve, not serving once its storage failed, answered without the bearer token.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "sidecar_common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use durable_sidecar::SidecarBuilder;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test]
async fn health_says_serving_without_the_token_and_not_serving_after_a_failed_commit() {
    let dir = std::env::temp_dir().join(format!(
        "durable-sidecar-health-{}-{}",
        std::process::id(),
        now_ts(Duration::ZERO).nanos
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("health.db");
    let sidecar = SidecarBuilder::new()
        .sqlite(&db)
        .bearer_token("s3cret")
        .start()
        .await
        .unwrap();
    let endpoint = sidecar.endpoint();
    // A probe cannot send the token: the health service does not ask for it.
    wait_for_health(&endpoint, ServingStatus::Serving, Duration::from_secs(5)).await;
    assert_eq!(
        health(&endpoint, "TaskHubSidecarService").await.unwrap(),
        ServingStatus::Serving
    );
    let unknown = health(&endpoint, "no.such.Service").await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // Make the next commit fail: the sidecar stops serving, and says so.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER fail_writes BEFORE INSERT ON instances BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .unwrap();
    drop(conn);
    let mut c = client(endpoint.clone()).await;
    let mut request = tonic::Request::new(durable_proto::CreateInstanceRequest {
        instance_id: "boom".into(),
        name: "B".into(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    let err = c.start_instance(request).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    wait_for_health(&endpoint, ServingStatus::NotServing, Duration::from_secs(5)).await;
    assert_eq!(
        health(&endpoint, "TaskHubSidecarService").await.unwrap(),
        ServingStatus::NotServing
    );
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
