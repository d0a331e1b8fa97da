"""Replicas with the official Python SDK as client and worker: our sidecar on SQLite, then on
PostgreSQL with 1, 2 and 3 replicas (`durable sidecar --postgres` processes on one database),
in one run. The same Python load every time: `--procs` processes, each one `TaskHubGrpcWorker`
and one `TaskHubGrpcClient`, spread round-robin over the replicas (so every replica has
workers). PostgreSQL is a throwaway local server from the Debian `postgresql` package, fsync on.

    cargo build --release --bin durable
    .venv/bin/python benches/replicas_python.py             # DURABLE_BIN overrides the binary
    .venv/bin/python benches/replicas_python.py --chains 2000 --fanout 1000

Prints, per configuration: 3-activity chains/s (`--chains`, default 1,000) and the wall time of
one fan-out (`--fanout`, default 10,000 activities), then the PostgreSQL/SQLite ratios. All
processes share this machine's cores: replicas here show what they cost, not how they scale.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sidecar_python import ROOT, Load, start_durable  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "python"))
from conftest import TempPostgres, postgres_bin  # noqa: E402


def chains(loads: list, n: int) -> float:
    procs = [p for load in loads for p in load.procs]
    k = len(procs)
    t0 = time.perf_counter()
    for i, p in enumerate(procs):
        p.stdin.write(f"chains {n // k + (1 if i < n % k else 0)}\n")
        p.stdin.flush()
    for p in procs:
        assert p.stdout.readline().startswith("result"), "load process failed"
    return n / (time.perf_counter() - t0)


def measure(label: str, addresses: list, procs: int, n: int, fan: int) -> tuple:
    print(f"{label}: {procs} Python load processes over {len(addresses)} sidecar(s)...", flush=True)
    loads = [Load(addresses[i % len(addresses)], 1, 0) for i in range(procs)]
    try:
        chains(loads, max(procs * 10, 50))  # warm-up
        rate = chains(loads, n)
        wall = loads[0].ask(f"fanout {fan}")[0]
    finally:
        for load in loads:
            load.close()
    print(f"  {label:<30} {rate:>7.0f} chains/s   fan-out {fan}: {wall:.2f} s", flush=True)
    return rate, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=3, help="Python load processes (default 3)")
    ap.add_argument("--chains", type=int, default=1000)
    ap.add_argument("--fanout", type=int, default=10_000)
    args = ap.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        proc, address = start_durable(tmp)
        try:
            rows["SQLite"] = measure("SQLite (synchronous=FULL)", [address], args.procs, args.chains, args.fanout)
        finally:
            proc.terminate()
            proc.wait()
        pg = TempPostgres(postgres_bin(), Path(tempfile.mkdtemp(prefix="durable-pg-bench-")))
        pg.fsync = True
        pg.start()
        try:
            for replicas in (1, 2, 3):
                url = pg.database(f"replicas{replicas}")
                sidecars = [start_durable(tmp, url) for _ in range(replicas)]
                try:
                    time.sleep(4 if replicas > 1 else 0)  # the replicas share out the partitions
                    rows[replicas] = measure(f"PostgreSQL, {replicas} replica(s)",
                                             [a for _, a in sidecars], args.procs, args.chains, args.fanout)
                finally:
                    for p, _ in sidecars:
                        p.terminate()
                    for p, _ in sidecars:
                        p.wait()
        finally:
            pg.stop()
    base_rate, base_wall = rows["SQLite"]
    print()
    for replicas in (1, 2, 3):
        rate, wall = rows[replicas]
        print(f"PostgreSQL with {replicas} replica(s) vs SQLite: chains/s {rate / base_rate:.2f}x, "
              f"fan-out time {wall / base_wall:.2f}x (target: chains/s >= 0.33x)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
