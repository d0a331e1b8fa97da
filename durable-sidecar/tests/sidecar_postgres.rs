//! PostgreSQL storage: one writer per database, clear failures, and the RPC suite's core flows.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "sidecar_common/mod.rs"]
mod common;

use common::postgres::TempPostgres;
use common::*;
use durable_proto::OrchestrationStatus;
use durable_sidecar::{SidecarBuilder, SidecarError};

#[tokio::test]
async fn a_second_sidecar_on_the_same_database_is_refused_until_the_first_stops() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let url = pg.database("one_writer");
    let first = SidecarBuilder::new().postgres(&url).start().await.unwrap();
    let err = SidecarBuilder::new()
        .postgres(&url)
        .start()
        .await
        .expect_err("a second writer on one database");
    let message = err.to_string();
    assert!(
        matches!(err, SidecarError::Postgres { .. })
            && message.contains("another durable sidecar is writing to this PostgreSQL database"),
        "{message}"
    );
    let mut c = client(first.endpoint()).await;
    let mut w = Worker::connect(first.endpoint()).await;
    start(&mut c, "kept", "O", None).await;
    let (_, token) = w.next_orchestration().await;
    w.complete(
        "kept",
        token,
        vec![finish(1, OrchestrationStatus::Completed, "7")],
    )
    .await;
    wait_done(&mut c, "kept").await;
    drop(w);
    first.shutdown().await;

    let second = SidecarBuilder::new()
        .postgres(&url)
        .start()
        .await
        .expect("the lock is released when the first sidecar stops");
    let mut c = client(second.endpoint()).await;
    let state = get(&mut c, "kept").await.expect("its instances are there");
    assert_eq!(state.output.as_deref(), Some("7"));
    second.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error_without_the_password() {
    let err = SidecarBuilder::new()
        .postgres("postgres://durable:s3cret@127.0.0.1:1/nowhere")
        .start()
        .await
        .expect_err("nothing listens on port 1");
    let message = err.to_string();
    assert!(
        message.contains(
            "cannot use the PostgreSQL database postgres://durable:***@127.0.0.1:1/nowhere"
        ),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
    let err = SidecarBuilder::new()
        .postgres("not a url at all ===")
        .start()
        .await
        .expect_err("a malformed URL");
    assert!(matches!(err, SidecarError::Postgres { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_rides_out_a_database_restart() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let url = pg.database("restart");
    let sidecar = SidecarBuilder::new().postgres(&url).start().await.unwrap();
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    start(&mut c, "before", "O", None).await;
    let (_, token) = w.next_orchestration().await;
    w.complete(
        "before",
        token,
        vec![finish(1, OrchestrationStatus::Completed, "1")],
    )
    .await;
    wait_done(&mut c, "before").await;

    // Every connection drops; the next commit and read reconnect.
    let pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();
    start(&mut c, "after", "O", None).await;
    let (_, token) = w.next_orchestration().await;
    w.complete(
        "after",
        token,
        vec![finish(1, OrchestrationStatus::Completed, "2")],
    )
    .await;
    assert_eq!(
        wait_done(&mut c, "after").await.output.as_deref(),
        Some("2")
    );
    assert_eq!(
        get(&mut c, "before").await.unwrap().output.as_deref(),
        Some("1"),
        "finished instances are read again after the restart"
    );
    sidecar.shutdown().await;
    drop(pg);
}
