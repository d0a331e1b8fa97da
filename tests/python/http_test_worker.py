"""A Durable Task worker (official Python SDK) for the HTTP API tests.

Usage: python http_test_worker.py ENDPOINT   (e.g. 127.0.0.1:4001)

Orchestrators:
  greet(name)  -> sets custom status "waiting", waits for the external event `approve`,
                  returns "Hello, <name>! (<approver>)"
  instant(x)   -> returns {"echo": x} immediately
Prints `ready` once the worker started, then runs until killed.
"""

import sys
import threading

from durabletask import task
from durabletask.worker import TaskHubGrpcWorker


def greet(ctx: task.OrchestrationContext, name):
    ctx.set_custom_status("waiting")
    approver = yield ctx.wait_for_external_event("approve")
    return f"Hello, {name}! ({approver})"


def instant(ctx: task.OrchestrationContext, value):
    return {"echo": value}


def main() -> None:
    worker = TaskHubGrpcWorker(host_address=sys.argv[1])
    worker.add_orchestrator(greet)
    worker.add_orchestrator(instant)
    worker.start()
    print("ready", flush=True)
    try:
        threading.Event().wait()
    finally:
        worker.stop()


if __name__ == "__main__":
    main()
