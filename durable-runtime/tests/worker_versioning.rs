//! Versioning and retries as the official SDKs have them: worker version match and failure
//! strategies, activities scheduled at the orchestration's version (or their own), tags on
//! activity and sub-orchestration calls, and retry predicates.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use durable::client::{RuntimeStatus, ScheduleOptions};
use durable::prelude::*;
use durable::sidecar::SidecarBuilder;
use durable::worker::{VersionFailure, VersionMatch, Versioning, WorkerOptions};

/// Reports the version it was scheduled at.
#[durable::activity]
async fn scheduled_version(ctx: ActivityContext, _: ()) -> String {
    ctx.version().to_owned()
}

#[durable::orchestrator]
async fn tagged_child(_ctx: OrchestrationContext, _: ()) -> durable::Result<()> {
    Ok(())
}

/// The versions its activities see, inherited and explicit, after a tagged child ran.
#[durable::orchestrator]
async fn versioned(ctx: OrchestrationContext, _: ()) -> durable::Result<Vec<String>> {
    let inherited = ctx.call_activity(scheduled_version, ()).await?;
    let options = ActivityOptions::new().version("7").tag("tenant", "contoso");
    let explicit = ctx
        .call_activity_with(scheduled_version, (), options)
        .await?;
    let child = SubOrchestratorOptions::new()
        .instance_id(format!("{}-child", ctx.instance_id()))
        .tag("purpose", "audit");
    ctx.call_sub_orchestrator_with(tagged_child, (), child)
        .await?;
    Ok(vec![inherited, explicit])
}

static TRANSIENT_CALLS: AtomicU32 = AtomicU32::new(0);
static FATAL_CALLS: AtomicU32 = AtomicU32::new(0);

/// Fails twice with a transient error, then succeeds.
#[durable::activity]
async fn flaky(_ctx: ActivityContext, _: ()) -> durable::Result<u32> {
    let call = TRANSIENT_CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    if call < 3 {
        return Err(durable::Error::typed("Transient", "try again"));
    }
    Ok(call)
}

/// Always fails with an error the retry predicate declines.
#[durable::activity]
async fn broken(_ctx: ActivityContext, _: ()) -> durable::Result<u32> {
    FATAL_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(durable::Error::typed("Fatal", "no point retrying"))
}

/// Retries only `Transient` failures.
#[durable::orchestrator]
async fn retries_transient(ctx: OrchestrationContext, which: String) -> durable::Result<u32> {
    let policy = RetryPolicy::new(5, Duration::from_millis(10))
        .handle(|retry| retry.failure().error_type == "Transient");
    let options = ActivityOptions::new().retry(policy);
    if which == "flaky" {
        Ok(ctx.call_activity_with(flaky, (), options).await?)
    } else {
        Ok(ctx.call_activity_with(broken, (), options).await?)
    }
}

fn strict(version: &str, failure: VersionFailure) -> WorkerOptions {
    WorkerOptions::new().versioning(
        Versioning::new(version)
            .match_strategy(VersionMatch::Strict)
            .failure_strategy(failure),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_workers_fail_other_versions_and_activities_inherit_the_version() {
    let runtime = durable::Runtime::builder()
        .ignore_environment()
        .in_memory()
        .worker_options(strict("2.0", VersionFailure::Fail))
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let at = |version: &str, id: &str| ScheduleOptions::new().version(version).instance_id(id);
    let current = client
        .schedule_new_orchestration_with(versioned, (), at("2.0", "v2"))
        .await
        .unwrap();
    let old = client
        .schedule_new_orchestration_with(versioned, (), at("1.0", "v1"))
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&current, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
    assert_eq!(state.output::<Vec<String>>().unwrap(), ["2.0", "7"]);
    let child = client
        .get_orchestration_state("v2-child")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(child.tags.get("purpose").map(String::as_str), Some("audit"));

    let state = client
        .wait_for_orchestration_completion(&old, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Failed);
    let failure = state.failure_details.unwrap();
    assert_eq!(
        failure.error_type,
        durable::worker::VERSION_MISMATCH_ERROR_TYPE
    );
    assert!(failure.message.contains("`1.0`"), "{}", failure.message);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_versions_wait_for_a_worker_that_runs_them() {
    let dir = std::env::temp_dir().join(format!("durable-versioning-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sidecar = SidecarBuilder::new()
        .sqlite(dir.join("versions.db"))
        .start()
        .await
        .unwrap();
    let connect = |options: WorkerOptions| {
        durable::Runtime::builder()
            .ignore_environment()
            .sidecar(sidecar.endpoint())
            .worker_options(options)
            .start()
    };
    let v2 = connect(strict("2.0", VersionFailure::Reject))
        .await
        .unwrap();
    let client = v2.client();
    let options = ScheduleOptions::new()
        .version("1.0")
        .instance_id("v1-waits");
    let id = client
        .schedule_new_orchestration_with(versioned, (), options)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let state = client.get_orchestration_state(&id).await.unwrap().unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Pending, "{state:?}");

    let v1 = connect(strict("1.0", VersionFailure::Reject))
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
    assert_eq!(state.output::<Vec<String>>().unwrap(), ["1.0", "7"]);
    v1.shutdown().await;
    v2.shutdown().await;
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_predicates_decide_which_failures_are_retried() {
    let runtime = durable::Runtime::builder()
        .ignore_environment()
        .in_memory()
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let flaky_id = client
        .schedule_new_orchestration(retries_transient, "flaky")
        .await
        .unwrap();
    let broken_id = client
        .schedule_new_orchestration(retries_transient, "broken")
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&flaky_id, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(state.output::<u32>().unwrap(), 3);
    let state = client
        .wait_for_orchestration_completion(&broken_id, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Failed);
    assert_eq!(
        FATAL_CALLS.load(Ordering::SeqCst),
        1,
        "a declined failure is not retried"
    );
    runtime.shutdown().await;
}
