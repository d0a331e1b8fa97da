//! Distributed tracing: W3C trace context carried through the protocol's trace-context
//! fields, and OpenTelemetry spans for orchestration episodes, activity executions, timers,
//! sub-orchestrations and events.
//!
//! Spans go to OpenTelemetry's global tracer provider (`opentelemetry::global`), so they are
//! exported wherever the application sends its own spans (or with [`crate::otel`]). Without a
//! provider they cost a no-op span each, and the trace context an orchestration was started
//! with still travels on to its activities and sub-orchestrations.
//!
//! Names and attributes follow the official SDKs (`orchestration:Name`, `activity:Name@(1.0)`,
//! `durabletask.task.instance_id`, ...), so a trace that crosses Python, .NET and Rust reads as
//! one.
//!
//! **Replay-safe.** An orchestration's code runs again on every episode; its spans do not: each
//! episode is one span, and a timer, activity, sub-orchestration or event gets its span in the
//! episode that receives its completion (a new history event), timed from the history's own
//! timestamps. Replayed events emit nothing.

mod context;
mod episode;

use std::borrow::Cow;

use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, global};

pub(crate) use context::{of_context, parent};
pub(crate) use episode::{EpisodeTrace, Origins};

use crate::proto;

/// The instrumentation scope of every span the SDK emits (the official SDKs' name).
const TRACER: &str = "durabletask";

const TYPE: &str = "durabletask.type";
const NAME: &str = "durabletask.task.name";
const VERSION: &str = "durabletask.task.version";
const INSTANCE_ID: &str = "durabletask.task.instance_id";
const STATUS: &str = "durabletask.task.status";
const TASK_ID: &str = "durabletask.task.task_id";
const TARGET_INSTANCE_ID: &str = "durabletask.event.target_instance_id";
const FIRE_AT: &str = "durabletask.fire_at";

/// `type:name`, or `type:name@(version)` (the official SDKs' span names).
fn span_name(kind: &str, name: &str, version: Option<&str>) -> Cow<'static, str> {
    match version.filter(|v| !v.is_empty()) {
        Some(version) => format!("{kind}:{name}@({version})").into(),
        None => format!("{kind}:{name}").into(),
    }
}

/// The attributes every task span carries.
fn task_attributes(
    kind: &'static str,
    name: &str,
    version: Option<&str>,
    instance_id: &str,
) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new(TYPE, kind),
        KeyValue::new(NAME, name.to_owned()),
        KeyValue::new(INSTANCE_ID, instance_id.to_owned()),
    ];
    if let Some(version) = version.filter(|v| !v.is_empty()) {
        attributes.push(KeyValue::new(VERSION, version.to_owned()));
    }
    attributes
}

/// A client's span for starting an orchestration (`create_orchestration:Name`, a producer span
/// under the caller's current context), and the trace context the request carries: the
/// span's, or the caller's own when no tracer provider records.
pub(crate) fn create_orchestration(
    name: &str,
    version: Option<&str>,
    instance_id: &str,
) -> (Context, Option<proto::TraceContext>) {
    let tracer = global::tracer(TRACER);
    let span = tracer
        .span_builder(span_name("create_orchestration", name, version))
        .with_kind(SpanKind::Producer)
        .with_attributes(task_attributes("orchestration", name, version, instance_id))
        .start_with_context(&tracer, &Context::current());
    let cx = Context::current_with_span(span);
    let trace = of_context(&cx);
    (cx, trace)
}

/// A client's span for raising an event (`orchestration_event:Name`, a producer span).
pub(crate) fn raise_event(event_name: &str, instance_id: &str) -> Context {
    let tracer = global::tracer(TRACER);
    let span = tracer
        .span_builder(span_name("orchestration_event", event_name, None))
        .with_kind(SpanKind::Producer)
        .with_attributes([
            KeyValue::new(TYPE, "event"),
            KeyValue::new(NAME, event_name.to_owned()),
            KeyValue::new(TARGET_INSTANCE_ID, instance_id.to_owned()),
        ])
        .start_with_context(&tracer, &Context::current());
    Context::current_with_span(span)
}

/// The span of one activity execution (`activity:Name`, a server span under the trace context
/// the orchestration scheduled it with), as a context to run the activity in.
pub(crate) fn activity(request: &proto::ActivityRequest) -> Context {
    let instance_id = request
        .orchestration_instance
        .as_ref()
        .map_or("", |i| i.instance_id.as_str());
    let version = request.version.as_deref();
    let mut attributes = task_attributes("activity", &request.name, version, instance_id);
    attributes.push(KeyValue::new(TASK_ID, i64::from(request.task_id)));
    let tracer = global::tracer(TRACER);
    let span = tracer
        .span_builder(span_name("activity", &request.name, version))
        .with_kind(SpanKind::Server)
        .with_attributes(attributes)
        .start_with_context(&tracer, &parent(request.parent_trace_context.as_ref()));
    Context::new().with_span(span)
}

/// Ends the span `cx` carries, as failed with `error` when there is one.
pub(crate) fn end(cx: &Context, error: Option<&str>) {
    let span = cx.span();
    match error {
        Some(message) => {
            span.set_attribute(KeyValue::new(STATUS, "Failed"));
            span.set_status(Status::error(message.to_owned()));
        }
        None => span.set_attribute(KeyValue::new(STATUS, "Completed")),
    }
    span.end();
}
