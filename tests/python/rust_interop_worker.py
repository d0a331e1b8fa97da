"""A Python worker for the cross-language tests with the Rust worker.

Usage: rust_interop_worker.py ENDPOINT   (e.g. 127.0.0.1:4001)

Registers the activity `py_hello` and the orchestrator `py_calls_rust` (which calls the Rust
activity `rust_hello` by name), asks the sidecar only for those (work item filters), prints
`READY` and runs until stdin closes or SIGTERM arrives.
"""

import signal
import sys
import threading

from durabletask import task, worker


def py_hello(ctx: task.ActivityContext, name: str) -> str:
    return f"Hello {name} from Python!"


def py_calls_rust(ctx: task.OrchestrationContext, name: str):
    greeting = yield ctx.call_activity("rust_hello", input=name)
    return {"from_rust": greeting, "orchestrator": "python"}


def main() -> None:
    endpoint = sys.argv[1]
    w = worker.TaskHubGrpcWorker(host_address=endpoint)
    w.add_activity(py_hello)
    w.add_orchestrator(py_calls_rust)
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
