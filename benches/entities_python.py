"""Entity throughput of the official Python SDK (client + worker) against our Rust sidecar
(SQLite on disk) and against the SDK's own in-memory backend (durabletask.testing), in one run.

    cargo build --release --bin durable
    .venv/bin/python benches/entities_python.py            # DURABLE_BIN overrides the binary
    .venv/bin/python benches/entities_python.py --scale 0.1

The same workload as `cargo bench -p durable-runtime --bench entities`, with a Python entity
and Python orchestrations: 10,000 signals to one entity from clients (`--procs` processes of
16 threads each; default one per CPU), 10,000
signals to one entity from one orchestration, 10,000 signals over 1,000 entities from the
clients, and 1,000 `call_entity` round trips one after another. Each figure is operations per
second from the first signal until the entity state shows every operation done. Both backends
get the same Python side; the rounds alternate between them.
"""

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from durabletask import client, entities, task, worker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sidecar_python import loadavg, rss, socket_port, start_in_memory  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def tally(ctx: entities.EntityContext, n):
    count = ctx.get_state(int, 0)
    if ctx.operation == "add":
        ctx.set_state(count + n)
        return None
    return count


def signal_many(ctx: task.OrchestrationContext, args):
    key, n = args
    target = entities.EntityInstanceId("tally", key)
    for _ in range(n):
        ctx.signal_entity(target, "add", 1)
    return None


def call_many(ctx: task.OrchestrationContext, args):
    key, n = args
    target = entities.EntityInstanceId("tally", key)
    last = 0
    for _ in range(n):
        yield ctx.call_entity(target, "add", 1)
        last = yield ctx.call_entity(target, "get")
    return last


def quiet_logger() -> logging.Logger:
    logger = logging.getLogger("bench-entities")
    logger.setLevel(logging.ERROR)
    return logger


def start_durable(tmp: str):
    binary = os.environ.get("DURABLE_BIN")
    if not binary:
        release = ROOT / "target" / "release" / "durable"
        binary = str(release if release.exists() else ROOT / "target" / "debug" / "durable")
    port = socket_port()
    db = Path(tmp) / "entities.db"
    print(f"durable sidecar: {binary}, SQLite file {db}", flush=True)
    proc = subprocess.Popen([binary, "sidecar", "--port", str(port), "--db", str(db)],
                            stdout=subprocess.PIPE, text=True)
    assert "listening on" in proc.stdout.readline()
    return proc, f"127.0.0.1:{port}"


def count(c: client.TaskHubGrpcClient, key: str) -> int:
    meta = c.get_entity(entities.EntityInstanceId("tally", key), include_state=True)
    # The in-memory backend reports entities that have work but no state yet, with state ''.
    return int(meta.get_state() or 0) if meta else 0


def wait_until(what: str, done) -> None:
    deadline = time.perf_counter() + 600
    while not done():
        if time.perf_counter() > deadline:
            raise TimeoutError(what)
        time.sleep(0.005)


def send_signals(job) -> None:
    """One client process: sends its share of the signals from 16 threads."""
    address, keys, indexes = job
    c = client.TaskHubGrpcClient(host_address=address, logger=quiet_logger())
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: c.signal_entity(entities.EntityInstanceId("tally", keys[i % len(keys)]),
                                                "add", input=1), indexes))


def signals_from_clients(address: str, keys: list, n: int, procs: int) -> None:
    jobs = [(address, keys, range(p, n, procs)) for p in range(procs)]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        pool.map(send_signals, jobs)


def run_scenarios(c: client.TaskHubGrpcClient, address: str, label: str, tag: str, scale: float,
                  procs: int) -> dict:
    n = max(10, int(10_000 * scale))
    spread = max(10, int(1_000 * scale))
    calls = max(10, int(1_000 * scale))
    out = {}
    key = f"{tag}-client"
    t0 = time.perf_counter()
    signals_from_clients(address, [key], n, procs)
    wait_until("client signals", lambda: count(c, key) >= n)
    out["client"] = n / (time.perf_counter() - t0)

    key = f"{tag}-orch"
    t0 = time.perf_counter()
    c.schedule_new_orchestration(signal_many, input=[key, n])
    wait_until("orchestration signals", lambda: count(c, key) >= n)
    out["orchestration"] = n / (time.perf_counter() - t0)

    keys = [f"{tag}-many-{i}" for i in range(spread)]
    t0 = time.perf_counter()
    signals_from_clients(address, keys, n, procs)
    query = client.EntityQuery(instance_id_starts_with=f"@tally@{tag}-many-", include_state=True,
                               page_size=1000)
    wait_until("spread signals",
               lambda: sum(int(e.get_state() or 0) for e in c.get_all_entities(query)) >= n)
    out["spread"] = n / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    iid = c.schedule_new_orchestration(call_many, input=[f"{tag}-calls", calls // 2])
    state = c.wait_for_orchestration_completion(iid, timeout=600)
    assert state and state.runtime_status == client.OrchestrationStatus.COMPLETED, state
    out["calls"] = calls / (time.perf_counter() - t0)
    for name, rate in out.items():
        print(f"  [{label}] {name:<13} {rate:>9.0f} ops/s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of every scenario")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds; the best counts")
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1,
                    help="client processes sending the signals (16 threads each)")
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {loadavg()}, scale {args.scale}", flush=True)
    names = ("durable", "in-memory")
    with tempfile.TemporaryDirectory() as tmp:
        servers = {"durable": start_durable(tmp), "in-memory": start_in_memory()}
        workers, clients = {}, {}
        try:
            for name in names:
                w = worker.TaskHubGrpcWorker(host_address=servers[name][1], logger=quiet_logger())
                w.add_entity(tally)
                w.add_orchestrator(signal_many)
                w.add_orchestrator(call_many)
                w.start()
                workers[name] = w
                clients[name] = client.TaskHubGrpcClient(host_address=servers[name][1],
                                                         logger=quiet_logger())
            best = {name: {} for name in names}
            for r in range(args.rounds):
                for name in names:
                    got = run_scenarios(clients[name], servers[name][1], name, f"r{r}", args.scale,
                                        args.procs)
                    for k, v in got.items():
                        best[name][k] = max(v, best[name].get(k, 0))
            for name in names:
                print(f"  [{name}] server RSS {rss(servers[name][0].pid)}", flush=True)
        finally:
            for w in workers.values():
                w.stop()
            for proc, _ in servers.values():
                if proc.stdin:
                    proc.stdin.close()
                proc.terminate()
                proc.wait(timeout=30)
    print("\nops/s (best round)      durable   in-memory   ratio")
    for k in ("client", "orchestration", "spread", "calls"):
        d, m = best["durable"][k], best["in-memory"][k]
        print(f"  {k:<20} {d:>9.0f} {m:>11.0f} {d / m:>7.2f}x")


if __name__ == "__main__":
    main()
