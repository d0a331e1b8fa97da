//! Spans and W3C trace context, checked with an in-memory OpenTelemetry exporter installed by
//! `durable::otel::install_exporter` (feature `otel`): one trace from the client through every
//! episode, activity, timer, event and sub-orchestration, each emitted once however often the
//! orchestration replays; and a trace the Python SDK starts, continuing through a Rust
//! orchestration into a Python activity, and through a Python orchestration into a Rust
//! activity, on our sidecar.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod worker_support;

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Duration;

use durable::client::RuntimeStatus;
use durable::prelude::*;
use durable::worker::WorkerOptions;
use opentelemetry::trace::{FutureExt as _, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, global};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use worker_support::{PyProcess, WAIT};

/// One exporter per test process (the tracer provider is global).
fn exporter() -> &'static (InMemorySpanExporter, durable::otel::OtelGuard) {
    static EXPORTER: OnceLock<(InMemorySpanExporter, durable::otel::OtelGuard)> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let guard = durable::otel::install_exporter(exporter.clone());
        (exporter, guard)
    })
}

fn finished_spans() -> Vec<SpanData> {
    let (exporter, guard) = exporter();
    guard.flush();
    exporter.get_finished_spans().unwrap()
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

async fn runtime(options: WorkerOptions) -> durable::RuntimeHandle {
    durable::Runtime::builder()
        .ignore_environment()
        .in_memory()
        .default_logging(false)
        .worker_options(options)
        .start()
        .await
        .unwrap()
}

#[durable::activity]
async fn add_one(n: u32) -> u32 {
    n + 1
}

#[durable::orchestrator]
async fn traced_child(ctx: OrchestrationContext, n: u32) -> durable::Result<u32> {
    Ok(ctx.call_activity(add_one, n).await?)
}

/// An activity, a timer, an event and a sub-orchestration: five episodes, each replaying
/// everything before it.
#[durable::orchestrator]
async fn traced_parent(ctx: OrchestrationContext, n: u32) -> durable::Result<u32> {
    let a = ctx.call_activity(add_one, n).await?;
    ctx.create_timer(Duration::from_millis(30)).await?;
    let b: u32 = ctx.wait_for_external_event("go").await?;
    Ok(ctx.call_sub_orchestrator(traced_child, a + b).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_the_client_through_every_task_each_span_once() {
    exporter();
    let runtime = runtime(WorkerOptions::new()).await;
    let client = runtime.client();

    let tracer = global::tracer("otel-test");
    let root = Context::current_with_span(tracer.start("test-root"));
    let root_span = root.span().span_context().clone();
    let id = client
        .schedule_new_orchestration(traced_parent, 1u32)
        .with_context(root.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .raise_orchestration_event(&id, "go", &10u32)
        .with_context(root.clone())
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
    assert_eq!(state.output::<u32>().unwrap(), 13);
    root.span().end();

    let trace_id = root_span.trace_id();
    let spans: Vec<SpanData> = finished_spans()
        .into_iter()
        .filter(|s| s.span_context.trace_id() == trace_id)
        .collect();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();

    let create = named(&spans, "create_orchestration:traced_parent");
    assert_eq!(create.len(), 1, "{names:?}");
    assert_eq!(create[0].parent_span_id, root_span.span_id());
    assert_eq!(create[0].span_kind, SpanKind::Producer);

    // Every episode is a server span under the client's span, with the instance's fields.
    let episodes = named(&spans, "orchestration:traced_parent");
    assert!(episodes.len() >= 5, "{names:?}");
    for episode in &episodes {
        assert_eq!(episode.parent_span_id, create[0].span_context.span_id());
        assert_eq!(episode.span_kind, SpanKind::Server);
        assert_eq!(
            attribute(episode, "durabletask.task.instance_id").as_deref(),
            Some(id.as_str())
        );
    }
    let episode_ids: HashSet<_> = episodes.iter().map(|s| s.span_context.span_id()).collect();
    assert_eq!(episode_ids.len(), episodes.len());
    let completed: Vec<_> = episodes
        .iter()
        .filter(|s| attribute(s, "durabletask.task.status").as_deref() == Some("Completed"))
        .collect();
    assert_eq!(completed.len(), 1, "exactly the last episode completes");

    // The activity ran once: one execution span, under an episode of the parent, and one
    // client span for its round trip, though later episodes replayed it four times.
    let executions: Vec<_> = named(&spans, "activity:add_one")
        .into_iter()
        .filter(|s| s.span_kind == SpanKind::Server)
        .collect();
    let round_trips: Vec<_> = named(&spans, "activity:add_one")
        .into_iter()
        .filter(|s| s.span_kind == SpanKind::Client)
        .collect();
    assert_eq!(executions.len(), 2, "parent's and child's: {names:?}");
    assert_eq!(round_trips.len(), 2, "{names:?}");
    let parent_execution = executions
        .iter()
        .find(|s| attribute(s, "durabletask.task.instance_id").as_deref() == Some(id.as_str()))
        .unwrap();
    assert!(episode_ids.contains(&parent_execution.parent_span_id));
    assert_eq!(
        attribute(parent_execution, "durabletask.task.task_id").as_deref(),
        Some("0")
    );

    let timers = named(&spans, "orchestration:traced_parent:timer");
    assert_eq!(timers.len(), 1, "{names:?}");
    let waited = timers[0]
        .end_time
        .duration_since(timers[0].start_time)
        .unwrap();
    assert!(waited >= Duration::from_millis(25), "{waited:?}");
    assert!(episode_ids.contains(&timers[0].parent_span_id));

    let events = named(&spans, "orchestration_event:go");
    let kinds: Vec<_> = events.iter().map(|s| s.span_kind.clone()).collect();
    assert_eq!(
        events.len(),
        2,
        "the client's and the orchestration's: {kinds:?}"
    );
    assert!(kinds.contains(&SpanKind::Producer) && kinds.contains(&SpanKind::Consumer));

    // The sub-orchestration's episodes continue the parent's trace under a parent's episode,
    // and the parent records the round trip as a client span named after the child.
    let (child_episodes, sub_round_trips): (Vec<&SpanData>, Vec<&SpanData>) =
        named(&spans, "orchestration:traced_child")
            .into_iter()
            .partition(|s| s.span_kind == SpanKind::Server);
    assert!(child_episodes.len() >= 2, "{names:?}");
    assert_eq!(sub_round_trips.len(), 1, "{names:?}");
    for span in child_episodes.iter().chain(&sub_round_trips) {
        assert!(episode_ids.contains(&span.parent_span_id));
    }
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestration_started_without_trace_context_gets_one_trace() {
    exporter();
    let runtime = runtime(WorkerOptions::new()).await;
    let client = runtime.client();
    let id = client
        .schedule_new_orchestration(traced_child, 5u32)
        .await
        .unwrap();
    client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    let spans = finished_spans();
    let mine: Vec<&SpanData> = spans
        .iter()
        .filter(|s| attribute(s, "durabletask.task.instance_id").as_deref() == Some(id.as_str()))
        .collect();
    let traces: HashSet<_> = mine.iter().map(|s| s.span_context.trace_id()).collect();
    assert_eq!(traces.len(), 1, "{mine:#?}");
    // The client span is the root; both episodes and the activity hang below it.
    assert!(
        mine.len() >= 4,
        "create, two episodes, the activity: {mine:#?}"
    );
    runtime.shutdown().await;
}

/// A span the Python SDK exported, as `tracing_interop.py` prints it.
#[derive(Debug, serde::Deserialize)]
struct PySpan {
    name: String,
    kind: String,
    trace_id: String,
    span_id: String,
    parent_span_id: Option<String>,
}

#[durable::activity]
async fn rust_traced_hello(name: String) -> String {
    format!("Hello {name} from Rust!")
}

#[durable::orchestrator]
async fn rust_calls_py_traced(ctx: OrchestrationContext, name: String) -> durable::Result<String> {
    let python: String = ctx
        .call_activity_by_name::<_, String>("py_traced_hello", &name)
        .await?;
    Ok(ctx.call_activity(rust_traced_hello, python).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_started_in_python_continues_through_rust_and_back() {
    exporter();
    let runtime = runtime(WorkerOptions::new().work_item_filters(true)).await;
    let endpoint = runtime.endpoint().trim_start_matches("http://").to_owned();
    let Some(mut python) = PyProcess::spawn("tracing_interop.py", &[endpoint]).await else {
        return;
    };
    let mut py_spans = Vec::new();
    let done = loop {
        let line = python.expect_line("").await;
        if let Some(json) = line.strip_prefix("SPAN ") {
            py_spans.push(serde_json::from_str::<PySpan>(json).unwrap());
        } else if let Some(rest) = line.strip_prefix("DONE ") {
            break rest.to_owned();
        } else {
            assert!(!line.starts_with("FAILED"), "{line}");
        }
    };
    python.stop().await;
    let mut fields = done.split(' ');
    let (trace, rust_id, py_id) = (
        fields.next().unwrap().to_owned(),
        fields.next().unwrap().to_owned(),
        fields.next().unwrap().to_owned(),
    );
    let rust_spans: Vec<SpanData> = finished_spans()
        .into_iter()
        .filter(|s| format!("{:032x}", s.span_context.trace_id()) == trace)
        .collect();
    let rust_names: Vec<&str> = rust_spans.iter().map(|s| s.name.as_ref()).collect();
    let py_names: Vec<&str> = py_spans.iter().map(|s| s.name.as_str()).collect();
    let hex = |s: &SpanData| format!("{:016x}", s.span_context.span_id());
    let parent_hex = |s: &SpanData| format!("{:016x}", s.parent_span_id);
    assert!(
        py_spans.iter().all(|s| s.trace_id == trace),
        "{py_spans:#?}"
    );

    // Python client -> Rust orchestration: the episodes hang under Python's producer span.
    let create = py_spans
        .iter()
        .find(|s| s.name == "create_orchestration:rust_calls_py_traced")
        .unwrap_or_else(|| panic!("{py_names:?}"));
    let episodes: Vec<&SpanData> = rust_spans
        .iter()
        .filter(|s| s.name == "orchestration:rust_calls_py_traced")
        .collect();
    assert!(episodes.len() >= 3, "{rust_names:?}");
    assert!(episodes.iter().all(|e| parent_hex(e) == create.span_id));
    let episode_ids: HashSet<String> = episodes.iter().map(|e| hex(e)).collect();

    // Rust orchestration -> Python activity: Python's server span hangs under a Rust episode.
    let py_activity = py_spans
        .iter()
        .find(|s| s.name == "activity:py_traced_hello" && s.kind == "SERVER")
        .unwrap_or_else(|| panic!("{py_names:?}"));
    assert!(
        episode_ids.contains(py_activity.parent_span_id.as_deref().unwrap()),
        "{py_activity:?} not under {episode_ids:?}"
    );

    // Python orchestration -> Rust activity (twice, in two episodes): the Rust executions
    // hang under the client spans Python's orchestration emitted for them.
    let py_orchestration = py_spans
        .iter()
        .find(|s| s.name == "orchestration:py_calls_rust_traced")
        .unwrap_or_else(|| panic!("{py_names:?}"));
    let py_round_trips: Vec<&PySpan> = py_spans
        .iter()
        .filter(|s| s.name == "activity:rust_traced_hello" && s.kind == "CLIENT")
        .collect();
    assert_eq!(py_round_trips.len(), 2, "{py_names:?}");
    // Both round trips sit under the one orchestration span: the sidecar kept the span id
    // Python's worker asked for across its dispatches.
    for round_trip in &py_round_trips {
        assert_eq!(
            round_trip.parent_span_id.as_deref(),
            Some(py_orchestration.span_id.as_str())
        );
    }
    let round_trip_ids: HashSet<&str> = py_round_trips.iter().map(|s| s.span_id.as_str()).collect();
    let rust_executions: Vec<&SpanData> = rust_spans
        .iter()
        .filter(|s| {
            s.name == "activity:rust_traced_hello"
                && s.span_kind == SpanKind::Server
                && attribute(s, "durabletask.task.instance_id").as_deref() == Some(py_id.as_str())
        })
        .collect();
    assert_eq!(rust_executions.len(), 2, "{rust_names:?}");
    for execution in rust_executions {
        assert!(round_trip_ids.contains(parent_hex(execution).as_str()));
    }
    assert!(
        rust_spans
            .iter()
            .any(|s| attribute(s, "durabletask.task.instance_id").as_deref()
                == Some(rust_id.as_str()))
    );
    runtime.shutdown().await;
}
