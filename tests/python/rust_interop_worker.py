"""A Python worker for the cross-language tests with the Rust worker.

Usage: rust_interop_worker.py ENDPOINT   (e.g. 127.0.0.1:4001)

Registers the activity `py_hello`, the orchestrator `py_calls_rust` (which calls the Rust
activity `rust_hello` by name), the entity `py_tally` and the orchestrator
`py_calls_rust_entity` (which signals and calls the Rust entity `rust_counter` by name), asks
the sidecar only for those (work item filters), prints `READY` and runs until stdin closes or
SIGTERM arrives.
"""

import signal
import sys
import threading

from durabletask import entities, task, worker


def py_hello(ctx: task.ActivityContext, name: str) -> str:
    return f"Hello {name} from Python!"


def py_calls_rust(ctx: task.OrchestrationContext, name: str):
    greeting = yield ctx.call_activity("rust_hello", input=name)
    return {"from_rust": greeting, "orchestrator": "python"}


def py_tally(ctx: entities.EntityContext, value):
    """A function entity: `add` sums, `get` reads."""
    total = ctx.get_state(int, 0)
    if ctx.operation == "add":
        ctx.set_state(total + value)
        return None
    if ctx.operation == "get":
        return total
    raise ValueError(f"unknown operation {ctx.operation}")


def py_calls_rust_entity(ctx: task.OrchestrationContext, key: str):
    counter = entities.EntityInstanceId("rust_counter", key)
    ctx.signal_entity(counter, "add", 40)
    yield ctx.call_entity(counter, "add", 2)
    total = yield ctx.call_entity(counter, "get")
    return {"total": total, "orchestrator": "python"}


def main() -> None:
    endpoint = sys.argv[1]
    w = worker.TaskHubGrpcWorker(host_address=endpoint)
    w.add_activity(py_hello)
    w.add_orchestrator(py_calls_rust)
    w.add_entity(py_tally)
    w.add_orchestrator(py_calls_rust_entity)
    w.use_work_item_filters()
    w.start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def watch_stdin() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print("READY", flush=True)
    stop.wait()
    w.stop()


if __name__ == "__main__":
    main()
