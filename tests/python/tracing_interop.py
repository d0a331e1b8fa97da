"""Python's half of the tracing interop test with the Rust worker (OpenTelemetry, W3C trace
context through the protocol).

Usage: tracing_interop.py ENDPOINT   (e.g. 127.0.0.1:4001)

Installs an OpenTelemetry tracer provider with an in-memory exporter, registers the activity
`py_traced_hello` and the orchestrator `py_calls_rust_traced` (which calls the Rust activity
`rust_traced_hello` twice, in two episodes), prints `READY`, then, inside one span
`py-root`, starts the Rust orchestrator `rust_calls_py_traced` (which calls `py_traced_hello`)
and `py_calls_rust_traced`, waits for both, and prints every span the Python SDK emitted as
`SPAN {json}` lines and `DONE` at the end.
"""

import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from durabletask import client, task, worker

EXPORTER = InMemorySpanExporter()


def py_traced_hello(ctx: task.ActivityContext, name: str) -> str:
    return f"Hello {name} from Python!"


def py_calls_rust_traced(ctx: task.OrchestrationContext, name: str):
    first = yield ctx.call_activity("rust_traced_hello", input=name)
    second = yield ctx.call_activity("rust_traced_hello", input=first)
    return second


def span_json(span) -> str:
    parent = span.parent.span_id if span.parent is not None else 0
    return json.dumps(
        {
            "name": span.name,
            "kind": span.kind.name,
            "trace_id": f"{span.context.trace_id:032x}",
            "span_id": f"{span.context.span_id:016x}",
            "parent_span_id": f"{parent:016x}" if parent else None,
            "attributes": {k: str(v) for k, v in (span.attributes or {}).items()},
        }
    )


def main() -> None:
    endpoint = sys.argv[1]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)

    w = worker.TaskHubGrpcWorker(host_address=endpoint)
    w.add_activity(py_traced_hello)
    w.add_orchestrator(py_calls_rust_traced)
    w.use_work_item_filters()
    w.start()
    print("READY", flush=True)

    c = client.TaskHubGrpcClient(host_address=endpoint)
    tracer = trace.get_tracer("tracing-interop-test")
    with tracer.start_as_current_span("py-root") as root:
        rust_id = c.schedule_new_orchestration("rust_calls_py_traced", input="Tokyo")
        py_id = c.schedule_new_orchestration("py_calls_rust_traced", input="Seattle")
        root_trace = f"{root.get_span_context().trace_id:032x}"
    for instance_id in (rust_id, py_id):
        state = c.wait_for_orchestration_completion(instance_id, timeout=60)
        if state is None or state.runtime_status != client.OrchestrationStatus.COMPLETED:
            print(f"FAILED {instance_id} {state}", flush=True)
            sys.exit(1)
    w.stop()
    for span in EXPORTER.get_finished_spans():
        print("SPAN " + span_json(span), flush=True)
    print(f"DONE {root_trace} {rust_id} {py_id}", flush=True)


if __name__ == "__main__":
    main()
