"""Serves the official Python SDK's in-memory sidecar (durabletask.testing) on 127.0.0.1.

Usage: in_memory_sidecar.py PORT   (0 = pick a free port)

Prints `READY <port>` on stdout once the gRPC server listens, then serves until stdin closes
or SIGTERM/SIGINT arrives. Used by the Rust integration tests as an independent sidecar.
For the tests' assertions it also prints one line per `Hello` (with the `taskhub` and `x-test`
metadata it received) and per abandoned work item (`ABANDON_ACTIVITY <token>`,
`ABANDON_ORCHESTRATION <token>`).
"""

import signal
import sys
import threading
from concurrent import futures

import grpc

import durabletask.internal.orchestrator_service_pb2_grpc as stubs
from durabletask.testing import InMemoryOrchestrationBackend


class RecordingBackend(InMemoryOrchestrationBackend):
    """The in-memory backend, reporting what the tests want to observe on stdout."""

    def Hello(self, request, context):
        metadata = dict(context.invocation_metadata())
        print(f"HELLO taskhub={metadata.get('taskhub', '')} x-test={metadata.get('x-test', '')}",
              flush=True)
        return super().Hello(request, context)

    def AbandonTaskActivityWorkItem(self, request, context):
        print(f"ABANDON_ACTIVITY {request.completionToken}", flush=True)
        return super().AbandonTaskActivityWorkItem(request, context)

    def AbandonTaskOrchestratorWorkItem(self, request, context):
        print(f"ABANDON_ORCHESTRATION {request.completionToken}", flush=True)
        return super().AbandonTaskOrchestratorWorkItem(request, context)


def main() -> None:
    requested = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    backend = RecordingBackend(port=requested)
    # Like backend.start(), but bound to loopback and able to report the port it got.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    stubs.add_TaskHubSidecarServiceServicer_to_server(backend, server)
    port = server.add_insecure_port(f"127.0.0.1:{requested}")
    if port == 0:
        print(f"FAILED could not bind 127.0.0.1:{requested}", flush=True)
        sys.exit(1)
    backend._server = server  # so backend.stop() stops it
    server.start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def watch_stdin() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"READY {port}", flush=True)
    stop.wait()
    backend.stop(grace=0)


if __name__ == "__main__":
    main()
