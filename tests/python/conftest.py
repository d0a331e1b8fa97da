"""Shared fixtures: start the `durable sidecar` binary on a free port, plus an SDK worker."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
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

    def __init__(self, db: Path | None, port: int | None = None, postgres: str | None = None,
                 args: tuple[str, ...] = ()):
        self.db = db
        self.postgres = postgres
        self.args = list(args)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Sidecar":
        args = [sidecar_binary(), "sidecar", "--port", str(self.port)]
        if self.postgres:
            args += ["--postgres", self.postgres]
        elif self.db:
            args += ["--db", str(self.db)]
        else:
            args += ["--in-memory"]
        args += self.args
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


class TempPostgres:
    """A throwaway PostgreSQL server (Debian `postgresql` binaries) in a temp dir, on a free
    loopback port; under root it runs as the `postgres` user, since PostgreSQL refuses root."""

    def __init__(self, bin_dir: Path, dir: Path):
        self.bin = bin_dir
        self.dir = dir
        self.port = free_port()
        self.fsync = False  # tests trade durability for speed; benches set it
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres" if subprocess.run(["id", "postgres"], capture_output=True).returncode == 0 else "nobody"
            subprocess.run(["chown", "-R", self.user, str(dir)], check=True)

    def _run(self, program: str, *args: str) -> None:
        cmd = [str(self.bin / program), *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, cwd=self.dir)

    def start(self) -> "TempPostgres":
        data = self.dir / "data"
        self._run("initdb", "-D", str(data), "-U", "durable", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        if not self.fsync:
            options += " -c fsync=off"
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(data), "-l", str(self.dir / "server.log"), "-o", options)
        return self

    def database(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "durable", name)
        return f"postgres://durable@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-m", "immediate", "-D", str(self.dir / "data"))


def postgres_bin() -> Path | None:
    env = os.environ.get("DURABLE_PG_BIN")
    if env:
        return Path(env)
    versions = sorted(p / "bin" for p in Path("/usr/lib/postgresql").glob("*") if (p / "bin" / "initdb").exists())
    return versions[-1] if versions else None


def _postgres():
    """Yields a running TempPostgres; skips (or fails under DURABLE_REQUIRE_POSTGRES) when
    PostgreSQL is not installed."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        if os.environ.get("DURABLE_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL is required (DURABLE_REQUIRE_POSTGRES) but not installed: apt-get install postgresql")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    # Not under pytest's tmp dir: that is private to the user, and the server may run as another.
    dir = Path(tempfile.mkdtemp(prefix="durable-pg-"))
    server = TempPostgres(bin_dir, dir).start()
    yield server
    server.stop()
    shutil.rmtree(dir, ignore_errors=True)


@pytest.fixture
def postgres_server():
    """A PostgreSQL server for one test."""
    yield from _postgres()


@pytest.fixture(scope="session")
def postgres_session():
    """One PostgreSQL server for the whole run; tests take a database each."""
    yield from _postgres()


_databases = iter(range(1, 1_000_000))


def storage_sidecar(request, tmp_path_factory) -> Sidecar:
    """A started sidecar on the storage named by `request.param` (`sqlite`, `memory` or
    `postgres`), for module fixtures parametrized over storages."""
    if request.param == "postgres":
        pg = request.getfixturevalue("postgres_session")
        return Sidecar(None, postgres=pg.database(f"suite_{next(_databases)}")).start()
    if request.param == "memory":
        return Sidecar(None).start()
    return Sidecar(tmp_path_factory.mktemp("db") / "suite.db").start()
