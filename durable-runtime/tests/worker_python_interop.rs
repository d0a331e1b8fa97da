//! Cross-language: a Python worker and our worker share one sidecar (the Python SDK's
//! in-memory backend). A Python orchestration calls a Rust activity by name, and a Rust
//! orchestration calls a Python activity by name. Both workers ask only for what they have
//! registered (work item filters), so each work item reaches the worker that can run it. The
//! same holds for entities: a Python orchestration calls a Rust entity, and a Rust
//! orchestration calls a Python entity, by name.

mod worker_support;

use futures::future::{BoxFuture, LocalBoxFuture};

use durable::client::{RuntimeStatus, ScheduleOptions};
use durable::worker::WorkerOptions;
use durable::{Activity, ActivityContext, Entity, OrchestrationContext, Orchestrator, Registry};
use worker_support::*;

/// Called by the Python orchestration `py_calls_rust`.
#[derive(Clone, Copy)]
struct RustHello;

impl Activity for RustHello {
    type Input = String;
    type Output = String;
    const NAME: &'static str = "rust_hello";
    fn run(ctx: ActivityContext, name: String) -> BoxFuture<'static, durable::Result<String>> {
        Box::pin(async move {
            Ok(format!(
                "Hello {name} from Rust (task {} of {})!",
                ctx.task_id(),
                ctx.orchestration_id()
            ))
        })
    }
}

/// Calls the Python activity `py_hello`.
#[derive(Clone, Copy)]
struct RustCallsPython;

impl Orchestrator for RustCallsPython {
    type Input = String;
    type Output = Vec<String>;
    const NAME: &'static str = "rust_calls_python";
    fn run(
        ctx: OrchestrationContext,
        name: String,
    ) -> LocalBoxFuture<'static, durable::Result<Vec<String>>> {
        Box::pin(async move {
            let python: String = ctx
                .call_activity_by_name::<_, String>("py_hello", &name)
                .await?;
            let rust = ctx.call_activity(RustHello, name).await?;
            Ok(vec![python, rust])
        })
    }
}

#[derive(Debug, serde::Deserialize)]
struct PyOutput {
    from_rust: String,
    orchestrator: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_rust_call_each_other_by_name() {
    let Some(sidecar) = PySidecar::start().await else {
        return;
    };
    let py_worker = PyProcess::spawn(
        "rust_interop_worker.py",
        &[format!("127.0.0.1:{}", sidecar.port)],
    )
    .await
    .expect("python is there: the sidecar started");

    let mut registry = Registry::new();
    registry
        .add_activity::<RustHello>()
        .and_then(|r| r.add_orchestrator::<RustCallsPython>())
        .unwrap();
    let worker = start_worker_with(
        &sidecar,
        registry,
        WorkerOptions::new().work_item_filters(true),
    )
    .await;
    let client = sidecar.client().await;

    // Python orchestration -> Rust activity.
    let py_id = client
        .schedule_new_orchestration_by_name("py_calls_rust", "Tokyo", ScheduleOptions::new())
        .await
        .unwrap();
    // Rust orchestration -> Python activity.
    let rust_id = client
        .schedule_new_orchestration(RustCallsPython, "Seattle")
        .await
        .unwrap();

    let state = client
        .wait_for_orchestration_completion(&py_id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
    let output: PyOutput = state.output().unwrap();
    assert_eq!(output.orchestrator, "python");
    assert_eq!(
        output.from_rust,
        // The Python SDK numbers its actions from 1.
        format!("Hello Tokyo from Rust (task 1 of {py_id})!")
    );

    let state = client
        .wait_for_orchestration_completion(&rust_id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
    let output: Vec<String> = state.output().unwrap();
    assert_eq!(output[0], "Hello Seattle from Python!");
    assert!(
        output[1].starts_with("Hello Seattle from Rust"),
        "{output:?}"
    );

    worker.shutdown().await;
    py_worker.stop().await;
    sidecar.stop().await;
}

/// The Rust entity the Python orchestration `py_calls_rust_entity` signals and calls.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct RustCounter {
    value: i64,
}

#[durable::entity(name = "rust_counter")]
impl RustCounter {
    /// Adds to the count.
    pub fn add(&mut self, amount: i64) {
        self.value += amount;
    }

    /// The count.
    pub fn get(&self) -> i64 {
        self.value
    }
}

/// Signals and calls the Python entity `py_tally` by name.
#[durable::orchestrator]
async fn rust_calls_python_entity(ctx: OrchestrationContext, key: String) -> durable::Result<i64> {
    let tally = durable::EntityId::new("py_tally", key)?;
    ctx.signal_entity_by_name(&tally, "add", 5);
    ctx.call_entity_by_name::<_, ()>(&tally, "add", 7).await?;
    Ok(ctx.call_entity_by_name(&tally, "get", ()).await?)
}

#[derive(Debug, serde::Deserialize)]
struct PyEntityOutput {
    total: i64,
    orchestrator: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_rust_call_each_others_entities() {
    let Some(sidecar) = PySidecar::start().await else {
        return;
    };
    let py_worker = PyProcess::spawn(
        "rust_interop_worker.py",
        &[format!("127.0.0.1:{}", sidecar.port)],
    )
    .await
    .expect("python is there: the sidecar started");
    let mut registry = Registry::new();
    registry
        .add_entity::<RustCounter>()
        .and_then(|r| r.add_orchestrator::<rust_calls_python_entity>())
        .unwrap();
    let worker = start_worker_with(
        &sidecar,
        registry,
        WorkerOptions::new().work_item_filters(true),
    )
    .await;
    let client = sidecar.client().await;

    let py_id = client
        .schedule_new_orchestration_by_name("py_calls_rust_entity", "k1", ScheduleOptions::new())
        .await
        .unwrap();
    let rust_id = client
        .schedule_new_orchestration(rust_calls_python_entity, "k2".to_string())
        .await
        .unwrap();

    let state = client
        .wait_for_orchestration_completion(&py_id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
    let output: PyEntityOutput = state.output().unwrap();
    assert_eq!((output.total, output.orchestrator.as_str()), (42, "python"));
    let counter = client
        .get_entity::<RustCounter>(&RustCounter::id("k1").unwrap())
        .await
        .unwrap()
        .expect("the Rust entity has state");
    assert_eq!(counter.state.value, 42);

    let state = client
        .wait_for_orchestration_completion(&rust_id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
    assert_eq!(state.output::<i64>().unwrap(), 12);

    worker.shutdown().await;
    py_worker.stop().await;
    sidecar.stop().await;
}
