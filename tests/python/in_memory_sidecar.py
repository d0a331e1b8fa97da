"""Serves the official Python SDK's in-memory sidecar (durabletask.testing) on 127.0.0.1.

Usage: in_memory_sidecar.py PORT   (0 = pick a free port)

Prints `READY <port>` on stdout once the gRPC server listens, then serves until stdin closes
or SIGTERM/SIGINT arrives. Used by the Rust integration tests as an independent sidecar.
"""

import signal
import sys
import threading
from concurrent import futures

import grpc

import durabletask.internal.orchestrator_service_pb2_grpc as stubs
from durabletask.testing import InMemoryOrchestrationBackend


def main() -> None:
    requested = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    backend = InMemoryOrchestrationBackend(port=requested)
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
