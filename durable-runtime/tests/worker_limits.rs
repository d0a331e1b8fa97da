//! What happens at the sidecar's message size limit: an activity whose result is too large
//! fails its task with a clear error instead of leaving the work item stuck in flight.

use std::time::Duration;

use futures::future::{BoxFuture, LocalBoxFuture};

use durable::client::RuntimeStatus;
use durable::{Activity, ActivityContext, OrchestrationContext, Orchestrator, Registry};

/// Returns 20 MiB of text: more than the sidecar accepts in one message (16 MiB).
#[derive(Clone, Copy)]
struct Huge;

impl Activity for Huge {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "huge";
    fn run(_: ActivityContext, _: ()) -> BoxFuture<'static, durable::Result<String>> {
        Box::pin(async { Ok("x".repeat(20 * 1024 * 1024)) })
    }
}

/// Calls `huge` and reports how it failed.
#[derive(Clone, Copy)]
struct CallsHuge;

impl Orchestrator for CallsHuge {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "calls_huge";
    fn run(ctx: OrchestrationContext, _: ()) -> LocalBoxFuture<'static, durable::Result<String>> {
        Box::pin(async move {
            match ctx.call_activity(Huge, ()).await {
                Ok(text) => Ok(format!("unexpectedly got {} bytes", text.len())),
                Err(e) => Ok(e.details().error_type),
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_activity_result_fails_the_task_clearly() {
    let mut registry = Registry::new();
    registry
        .add_activity::<Huge>()
        .and_then(|r| r.add_orchestrator::<CallsHuge>())
        .unwrap();
    let runtime = durable::Runtime::builder()
        .ignore_environment()
        .in_memory()
        .registry(registry)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let id = client
        .schedule_new_orchestration(CallsHuge, ())
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
    assert_eq!(
        state.output::<String>().unwrap(),
        "durable::PayloadTooLarge"
    );
    runtime.shutdown().await;
}
