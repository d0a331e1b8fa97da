"""Serve the official Python SDK's in-memory Durable Task sidecar on 127.0.0.1:PORT.

Usage: python in_memory_sidecar.py PORT

Prints `ready <port>` on stdout once the gRPC server accepts connections, then serves
until the process is killed.
"""

import sys
import threading

from durabletask.testing import create_test_backend


def main() -> None:
    port = int(sys.argv[1])
    backend = create_test_backend(port=port)
    print(f"ready {port}", flush=True)
    try:
        threading.Event().wait()
    finally:
        backend.stop()


if __name__ == "__main__":
    main()
