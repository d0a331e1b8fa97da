//! Cooperative activity cancellation: a running activity learns through
//! `ActivityContext::cancelled` that its orchestration was terminated, and that the worker is
//! shutting down; shutdown then returns as soon as the activity stops, and the stopped
//! activity runs again on the next worker instead of failing its orchestration.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use durable::client::RuntimeStatus;
use durable::prelude::*;
use durable::sidecar::SidecarBuilder;
use durable::worker::WorkerOptions;

static TERMINATE_STARTED: AtomicBool = AtomicBool::new(false);
static TERMINATE_CANCELLED: AtomicBool = AtomicBool::new(false);
static SHUTDOWN_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// Runs for up to a minute unless cancelled.
#[durable::activity]
async fn long_report(ctx: ActivityContext, _: ()) -> durable::Result<String> {
    TERMINATE_STARTED.store(true, Ordering::SeqCst);
    tokio::select! {
        () = ctx.cancelled() => {
            TERMINATE_CANCELLED.store(ctx.is_cancelled(), Ordering::SeqCst);
            Err(durable::Error::typed("Cancelled", "the report is no longer wanted"))
        }
        () = tokio::time::sleep(Duration::from_secs(60)) => Ok("finished".into()),
    }
}

#[durable::orchestrator]
async fn report(ctx: OrchestrationContext, _: ()) -> durable::Result<String> {
    Ok(ctx.call_activity(long_report, ()).await?)
}

/// The first attempt waits for cancellation and fails; later attempts succeed at once.
#[durable::activity]
async fn interrupted_export(ctx: ActivityContext, _: ()) -> durable::Result<String> {
    if SHUTDOWN_ATTEMPTS.fetch_add(1, Ordering::SeqCst) == 0 {
        ctx.cancelled().await;
        return Err(durable::Error::typed("Cancelled", "stopped for shutdown"));
    }
    Ok("exported".into())
}

#[durable::orchestrator]
async fn export(ctx: OrchestrationContext, _: ()) -> durable::Result<String> {
    Ok(ctx.call_activity(interrupted_export, ()).await?)
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_the_orchestration_cancels_its_running_activity() {
    let runtime = durable::Runtime::builder()
        .ignore_environment()
        .in_memory()
        .worker_options(WorkerOptions::new().activity_cancellation_poll(Duration::from_millis(100)))
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let id = client.schedule_new_orchestration(report, ()).await.unwrap();
    wait_until("the activity runs", || {
        TERMINATE_STARTED.load(Ordering::SeqCst)
    })
    .await;
    assert!(!TERMINATE_CANCELLED.load(Ordering::SeqCst));
    client.terminate_orchestration(&id, false).await.unwrap();
    let terminated = Instant::now();
    wait_until("the activity sees the cancellation", || {
        TERMINATE_CANCELLED.load(Ordering::SeqCst)
    })
    .await;
    assert!(terminated.elapsed() < Duration::from_secs(5));
    let state = client
        .wait_for_orchestration_completion(&id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Terminated);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_running_activities_and_returns_when_they_stop() {
    let dir = std::env::temp_dir().join(format!("durable-cancel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sidecar = SidecarBuilder::new()
        .sqlite(dir.join("cancel.db"))
        .start()
        .await
        .unwrap();
    let worker_options = WorkerOptions::new().shutdown_grace(Duration::from_secs(30));
    let first = durable::Runtime::builder()
        .ignore_environment()
        .sidecar(sidecar.endpoint())
        .worker_options(worker_options.clone())
        .start()
        .await
        .unwrap();
    let client = first.client();
    let id = client.schedule_new_orchestration(export, ()).await.unwrap();
    wait_until("the first attempt runs", || {
        SHUTDOWN_ATTEMPTS.load(Ordering::SeqCst) == 1
    })
    .await;
    let stopping = Instant::now();
    first.shutdown().await;
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "shutdown took {took:?}: it waited for the grace period instead of cancelling"
    );
    // The cancelled attempt's failure was not reported: the next worker runs it again.
    let second = durable::Runtime::builder()
        .ignore_environment()
        .sidecar(sidecar.endpoint())
        .worker_options(worker_options)
        .start()
        .await
        .unwrap();
    let state = second
        .client()
        .wait_for_orchestration_completion(&id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
    assert_eq!(state.output::<String>().unwrap(), "exported");
    assert_eq!(SHUTDOWN_ATTEMPTS.load(Ordering::SeqCst), 2);
    second.shutdown().await;
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
