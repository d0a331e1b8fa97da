"""Shared fixtures: start the `durable sidecar` binary on a free port, plus an SDK worker."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def sidecar_binary() -> str:
    env = os.environ.get("DURABLE_BIN")
    if env:
        return env
    path = ROOT / "target" / "debug" / "durable"
    if not path.exists():
        pytest.fail("sidecar binary not found: run `cargo build --bin durable` or set DURABLE_BIN")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sidecar:
    """A `durable sidecar` child process."""

    def __init__(self, db: Path | None, port: int | None = None):
        self.db = db
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Sidecar":
        args = [sidecar_binary(), "sidecar", "--port", str(self.port)]
        args += ["--db", str(self.db)] if self.db else ["--in-memory"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
        line = self.proc.stdout.readline()
        assert "listening on" in line, f"unexpected sidecar output: {line!r}"
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
