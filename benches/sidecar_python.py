"""Throughput/latency of the official Python SDK (client + worker) against our Rust sidecar
(SQLite on disk), compared with the SDK's own in-memory backend (durabletask.testing), in one run.

    cargo build --release --bin durable
    .venv/bin/python benches/sidecar_python.py            # DURABLE_BIN overrides the binary

Prints: 3-activity chains/s for 200 and 2,000 orchestrations, fan-out of 1,000 activities wall
time, single-chain latency, and the sidecar's RSS (VmRSS / VmHWM from /proc/PID/status).
"""

import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from durabletask import client, task, worker

ROOT = Path(__file__).resolve().parents[1]


def hello(ctx: task.ActivityContext, name: str) -> str:
    return f"Hello {name}!"


def double(ctx: task.ActivityContext, n: int) -> int:
    return n * 2


def chain(ctx: task.OrchestrationContext, _):
    a = yield ctx.call_activity(hello, input="Tokyo")
    b = yield ctx.call_activity(hello, input="Seattle")
    c = yield ctx.call_activity(hello, input="London")
    return [a, b, c]


def fan_out(ctx: task.OrchestrationContext, n: int):
    results = yield task.when_all([ctx.call_activity(double, input=i) for i in range(n)])
    return sum(results)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid: int) -> str:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = value.strip()
    return f"RSS {fields.get('VmRSS')} (peak {fields.get('VmHWM')})"


def quiet() -> None:
    for name in ("durabletask-worker", "durabletask-client", "durabletask"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_chains(c: client.TaskHubGrpcClient, n: int, label: str) -> float:
    t0 = time.perf_counter()
    ids = [c.schedule_new_orchestration(chain) for _ in range(n)]
    for k, iid in enumerate(ids):
        state = c.wait_for_orchestration_completion(iid, timeout=600)
        assert state and state.runtime_status == client.OrchestrationStatus.COMPLETED, state
        if (k + 1) % max(1, n // 4) == 0:
            print(f"  [{label}] {k + 1}/{n} chains done", flush=True)
    elapsed = time.perf_counter() - t0
    return n / elapsed


def workload(address: str, label: str, pid: int) -> dict:
    w = worker.TaskHubGrpcWorker(host_address=address)
    w.add_orchestrator(chain)
    w.add_orchestrator(fan_out)
    w.add_activity(hello)
    w.add_activity(double)
    w.start()
    quiet()
    c = client.TaskHubGrpcClient(host_address=address)
    quiet()
    out = {}
    try:
        run_chains(c, 20, f"{label} warm-up")
        lat = []
        for _ in range(10):
            t0 = time.perf_counter()
            iid = c.schedule_new_orchestration(chain)
            c.wait_for_orchestration_completion(iid, timeout=60)
            lat.append(time.perf_counter() - t0)
        out["latency_ms"] = 1000 * sorted(lat)[len(lat) // 2]
        print(f"  [{label}] single chain latency (median of 10): {out['latency_ms']:.1f} ms", flush=True)
        for n in (200, 2000):
            out[f"chains_{n}"] = run_chains(c, n, label)
            print(f"  [{label}] {n} chains: {out[f'chains_{n}']:.0f} chains/s", flush=True)
        t0 = time.perf_counter()
        iid = c.schedule_new_orchestration(fan_out, input=1000)
        state = c.wait_for_orchestration_completion(iid, timeout=600)
        assert state.serialized_output == str(sum(2 * i for i in range(1000)))
        out["fan_out_s"] = time.perf_counter() - t0
        print(f"  [{label}] fan-out of 1,000 activities: {out['fan_out_s']:.2f} s", flush=True)
        out["rss"] = rss(pid)
        print(f"  [{label}] server {out['rss']}", flush=True)
    finally:
        w.stop()
    return out


def main() -> None:
    binary = os.environ.get("DURABLE_BIN")
    if not binary:
        release = ROOT / "target" / "release" / "durable"
        binary = str(release if release.exists() else ROOT / "target" / "debug" / "durable")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        db = Path(tmp) / "bench.db"
        print(f"== durable sidecar ({binary}, sqlite {db})", flush=True)
        proc = subprocess.Popen([binary, "sidecar", "--port", str(port), "--db", str(db)],
                                stdout=subprocess.PIPE, text=True)
        assert "listening on" in proc.stdout.readline()
        try:
            results["durable sidecar (sqlite)"] = workload(f"127.0.0.1:{port}", "durable", proc.pid)
        finally:
            proc.terminate()
            proc.wait()

    port = free_port()
    print("== durabletask.testing in-memory backend (separate process)", flush=True)
    code = ("import sys, time\n"
            "from durabletask.testing.in_memory_backend import create_test_backend\n"
            f"b = create_test_backend(port={port})\n"
            "import logging; logging.getLogger().setLevel(logging.WARNING)\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().strip() == "ready"
    try:
        results["python in-memory backend"] = workload(f"127.0.0.1:{port}", "in-memory", proc.pid)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)

    print("\n== summary")
    print(f"{'backend':30} {'200 chains/s':>13} {'2000 chains/s':>14} {'fan-out 1k (s)':>15} {'latency (ms)':>13}  server memory")
    for name, r in results.items():
        print(f"{name:30} {r['chains_200']:13.0f} {r['chains_2000']:14.0f} {r['fan_out_s']:15.2f} "
              f"{r['latency_ms']:13.1f}  {r['rss']}")
    ours = results["durable sidecar (sqlite)"]["chains_2000"]
    theirs = results["python in-memory backend"]["chains_2000"]
    print(f"speed-up on 2,000 chains: {ours / theirs:.1f}x")


if __name__ == "__main__":
    main()
