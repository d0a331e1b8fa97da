"""Throughput/latency of the official Python SDK (client + worker) against our Rust sidecar
(SQLite on disk, with the default `--synchronous full` and with `normal`), compared with the SDK's
own in-memory backend (durabletask.testing), in one run.

    cargo build --release --bin durable
    .venv/bin/python benches/sidecar_python.py                # DURABLE_BIN overrides the binary
    .venv/bin/python benches/sidecar_python.py --procs 4      # Python load processes (default: CPUs)

Both backends get exactly the same Python side: `--procs` processes, each running one
`TaskHubGrpcWorker` (default `ConcurrencyOptions`, logging at ERROR through the documented
`logger=` argument) and one `TaskHubGrpcClient` that schedules and waits for its share of the
orchestrations. Work items go to whichever worker the backend picks, so the workers share the load.
Both backends run side by side for the whole run and every measurement alternates between them
(`--rounds`, best round counts), so load from other processes on the machine hits both alike.

Prints, per backend: 3-activity chains/s for 200 and 2,000 orchestrations, fan-out of 1,000
activities wall time, single-chain latency, the server's CPU time per chain and its RSS
(VmRSS / VmHWM from /proc/PID/status); then a summary with the ratio against the 3x target.

    .venv/bin/python benches/sidecar_python.py --accumulate 5   # flat as finished instances pile up?

`--accumulate N` is a separate scenario (the backend comparison above does not run): ONE of our
sidecars (SQLite on disk, `--synchronous full`), the same `--procs` load processes, a short
warm-up, then N consecutive rounds of `--round-size` (2,000) 3-activity chains on the same file,
nothing purged in between. After each round it prints one line: the round, the instances completed
so far (warm-up included), that round's chains/s, the server's CPU per chain, its VmRSS and VmHWM
and the size of the database file (+ WAL); at the end the last/first ratios of chains/s, server CPU
per chain, server/Python CPU per chain (other load on the machine moves both alike, stored
instances only the server's) and RSS, and whether the target is met (last round >= 0.9x the first
round's chains/s). The machine's other load moves chains/s by more than 10% between rounds: run
it on a quiet machine, or twice.
"""

import argparse
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
TARGET = 3.0
ACCUMULATE_TARGET = 0.9  # --accumulate: last round's chains/s at least this fraction of the first's


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


# ---------------------------------------------------------------------------------------------
# Load process: one worker + one client, driven by commands on stdin, answers on stdout.
# ---------------------------------------------------------------------------------------------

def quiet_logger() -> logging.Logger:
    # The SDK builds its own INFO-level logger (one line per work item on stderr) unless given
    # one; that logging alone costs ~20% of the worker's CPU, so pass a quiet one as a user would.
    # ERROR, not WARNING: stopping a worker logs its cancelled stream as a warning.
    logger = logging.getLogger("bench-durabletask")
    logger.setLevel(logging.ERROR)
    return logger


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child(address: str, threads: int) -> None:
    logger = quiet_logger()
    options = worker.ConcurrencyOptions(maximum_thread_pool_workers=threads or None)
    w = worker.TaskHubGrpcWorker(host_address=address, logger=logger, concurrency_options=options)
    w.add_orchestrator(chain)
    w.add_orchestrator(fan_out)
    w.add_activity(hello)
    w.add_activity(double)
    w.start()
    c = client.TaskHubGrpcClient(host_address=address, logger=logger)
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            cmd, *args = line.split()
            t0 = time.perf_counter()
            if cmd == "chains":
                ids = [c.schedule_new_orchestration(chain) for _ in range(int(args[0]))]
                for iid in ids:
                    state = c.wait_for_orchestration_completion(iid, timeout=600)
                    assert state and state.runtime_status == client.OrchestrationStatus.COMPLETED, state
            elif cmd == "latency":
                lat = []
                for _ in range(int(args[0])):
                    t1 = time.perf_counter()
                    iid = c.schedule_new_orchestration(chain)
                    c.wait_for_orchestration_completion(iid, timeout=60)
                    lat.append(time.perf_counter() - t1)
                print(f"result {sorted(lat)[len(lat) // 2]}", flush=True)
                continue
            elif cmd == "fanout":
                n = int(args[0])
                iid = c.schedule_new_orchestration(fan_out, input=n)
                state = c.wait_for_orchestration_completion(iid, timeout=600)
                assert state and state.serialized_output == str(sum(2 * i for i in range(n))), state
            elif cmd == "cpu":
                print(f"result {time.process_time()}", flush=True)
                continue
            print(f"result {time.perf_counter() - t0}", flush=True)
    finally:
        w.stop()


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

class Load:
    def __init__(self, address: str, procs: int, threads: int):
        self.procs = [
            subprocess.Popen([sys.executable, __file__, "--child", address, "--threads", str(threads)],
                             stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
            for _ in range(procs)
        ]
        for p in self.procs:
            assert p.stdout.readline().strip() == "ready"

    def ask(self, cmd: str, who=None) -> list:
        who = self.procs if who is None else who
        for p in who:
            p.stdin.write(cmd + "\n")
            p.stdin.flush()
        out = []
        for p in who:
            line = p.stdout.readline().split()
            assert line and line[0] == "result", f"load process failed on {cmd!r}"
            out.append(float(line[1]))
        return out

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def close(self) -> None:
        for p in self.procs:
            p.stdin.close()
        for p in self.procs:
            p.wait(timeout=60)


def rss_kib(pid: int) -> dict:
    """VmRSS and VmHWM of `pid` in KiB, from /proc/PID/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def rss(pid: int) -> str:
    fields = rss_kib(pid)
    return f"{fields.get('VmRSS')} kB (peak {fields.get('VmHWM')} kB)"


def chains(load: Load, n: int, server_pid: int, label: str, quiet: bool = False) -> dict:
    k = len(load.procs)
    shares = [n // k + (1 if i < n % k else 0) for i in range(k)]
    s0, p0, t0 = cpu_seconds(server_pid), load.cpu(), time.perf_counter()
    for p, share in zip(load.procs, shares):
        p.stdin.write(f"chains {share}\n")
        p.stdin.flush()
    for p in load.procs:
        assert p.stdout.readline().startswith("result"), "load process failed"
    wall = time.perf_counter() - t0
    r = {"rate": n / wall, "wall": wall, "server_ms": 1000 * (cpu_seconds(server_pid) - s0) / n,
         "python_ms": 1000 * (load.cpu() - p0) / n}
    if not quiet:
        print(f"  [{label}] {n} chains: {r['rate']:.0f} chains/s ({wall:.2f} s); CPU per chain: "
              f"server {r['server_ms']:.2f} ms, Python workers+clients {r['python_ms']:.2f} ms", flush=True)
    return r


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def start_durable(tmp: str, postgres: str | None = None, synchronous: str = "full") -> tuple:
    binary = os.environ.get("DURABLE_BIN")
    if not binary:
        release = ROOT / "target" / "release" / "durable"
        binary = str(release if release.exists() else ROOT / "target" / "debug" / "durable")
    port = socket_port()
    if postgres:
        storage = ["--postgres", postgres]
        print(f"durable sidecar: {binary}, PostgreSQL {postgres}", flush=True)
    else:
        db = Path(tmp) / f"bench-{synchronous}.db"
        storage = ["--db", str(db), "--synchronous", synchronous]
        print(f"durable sidecar: {binary}, SQLite file {db}, synchronous={synchronous}", flush=True)
    proc = subprocess.Popen([binary, "sidecar", "--port", str(port), *storage],
                            stdout=subprocess.PIPE, text=True)
    assert "listening on" in proc.stdout.readline()
    return proc, f"127.0.0.1:{port}"


def start_in_memory() -> tuple:
    port = socket_port()
    code = ("import sys, logging\n"
            "logging.disable(logging.INFO)\n"
            "from durabletask.testing.in_memory_backend import create_test_backend\n"
            f"b = create_test_backend(port={port})\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().strip() == "ready"
    print("in-memory backend: durabletask.testing.create_test_backend in its own process", flush=True)
    return proc, f"127.0.0.1:{port}"


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def accumulate(args) -> None:
    """--accumulate: N rounds of --round-size chains on one sidecar, finished instances kept."""
    n, size = args.accumulate, args.round_size
    print(f"{os.cpu_count()} CPUs, load average {loadavg()}, {args.procs} Python load process(es), "
          f"thread pool {args.threads or 'SDK default'}; {n} rounds of {size:,} chains on one sidecar, "
          f"nothing purged", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        server, address = start_durable(tmp)
        db = Path(tmp) / "bench-full.db"
        load = None
        rounds = []
        try:
            load = Load(address, args.procs, args.threads)
            warm = 20 * args.procs
            chains(load, warm, server.pid, "warm-up")
            done = warm
            for i in range(1, n + 1):
                r = chains(load, size, server.pid, f"round {i}", quiet=True)
                done += size
                r.update(rss_kib(server.pid))
                db_bytes = sum(f.stat().st_size for f in (db, Path(f"{db}-wal")) if f.exists())
                rounds.append(r)
                print(f"  round {i}/{n}: {done:,} completed so far, {r['rate']:.1f} chains/s "
                      f"({r['wall']:.2f} s), CPU per chain: server {r['server_ms']:.2f} ms, Python "
                      f"{r['python_ms']:.2f} ms; "
                      f"RSS {mib(r['VmRSS'])} (peak {mib(r['VmHWM'])}), db {db_bytes / 2**20:.1f} MiB, "
                      f"load average {loadavg()}", flush=True)
        finally:
            if load:
                load.close()
            server.terminate()
            server.wait()
    first, last = rounds[0], rounds[-1]
    rate = last["rate"] / first["rate"]
    print(f"\n== accumulate summary ({os.cpu_count()} CPUs, {args.procs} Python load process(es), "
          f"load average now {loadavg()})")
    rates = " -> ".join(f"{r['rate']:.0f}" for r in rounds)
    sizes = " -> ".join(f"{r['VmRSS'] / 1024:.0f}" for r in rounds)
    print(f"chains/s per round: {rates}; RSS after each round: {sizes} MiB")
    # Other load on the machine slows the server and the Python processes alike; work that grows
    # with the finished instances slows only the server, so its share of the CPU is the steadier sign.
    share = (last["server_ms"] / last["python_ms"]) / (first["server_ms"] / first["python_ms"])
    print(f"last/first: chains/s {rate:.2f}x, server CPU per chain "
          f"{last['server_ms'] / first['server_ms']:.2f}x, server/Python CPU per chain {share:.2f}x, "
          f"RSS {last['VmRSS'] / first['VmRSS']:.2f}x "
          f"({mib(first['VmRSS'])} -> {mib(last['VmRSS'])}, peak {mib(last['VmHWM'])}); target "
          f"(last round >= {ACCUMULATE_TARGET}x the first): {'met' if rate >= ACCUMULATE_TARGET else 'NOT met'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1,
                    help="Python load processes (worker + client each), same for both backends")
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternating rounds per measurement; the best round of each backend counts")
    ap.add_argument("--threads", type=int, default=0,
                    help="ConcurrencyOptions.maximum_thread_pool_workers of each worker (0 = SDK default)")
    ap.add_argument("--postgres", metavar="URL",
                    help="also measure our sidecar on this PostgreSQL database ('auto': start a throwaway "
                         "local server from the Debian postgresql package, fsync on)")
    ap.add_argument("--accumulate", type=int, nargs="?", const=5, default=0, metavar="N",
                    help="instead of the comparison: N (default 5) consecutive rounds of --round-size "
                         "chains on one sidecar (SQLite, synchronous full), nothing purged; prints "
                         "chains/s and RSS per round")
    ap.add_argument("--round-size", type=int, default=2000,
                    help="chains per round with --accumulate")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.threads)
        return
    if args.accumulate:
        accumulate(args)
        return

    print(f"{os.cpu_count()} CPUs, load average {loadavg()}, {args.procs} Python load process(es) per "
          f"backend, thread pool {args.threads or 'SDK default'}, best of {args.rounds} alternating rounds",
          flush=True)
    names = ("durable", "durable-normal", "in-memory") + (("durable-pg",) if args.postgres else ())
    pg_server = None
    with tempfile.TemporaryDirectory() as tmp:
        servers = {"durable": start_durable(tmp), "durable-normal": start_durable(tmp, synchronous="normal"),
                   "in-memory": start_in_memory()}
        if args.postgres:
            url = args.postgres
            if url == "auto":
                sys.path.insert(0, str(ROOT / "tests" / "python"))
                from conftest import TempPostgres, postgres_bin
                pg_dir = Path(tempfile.mkdtemp(prefix="durable-pg-bench-"))
                pg_server = TempPostgres(postgres_bin(), pg_dir)
                pg_server.fsync = True
                url = pg_server.start().database("bench")
            servers["durable-pg"] = start_durable(tmp, url)
        loads = {}
        try:
            # Both backends are up with their load processes for the whole run and every
            # measurement alternates between them, so load from other processes on the machine
            # hits both alike.
            for name in names:
                loads[name] = Load(servers[name][1], args.procs, args.threads)
                chains(loads[name], 20 * args.procs, servers[name][0].pid, f"{name} warm-up")
            res = {name: {} for name in names}
            for _ in range(args.rounds):
                for name in names:
                    ms = 1000 * loads[name].ask("latency 10", loads[name].procs[:1])[0]
                    print(f"  [{name}] single chain latency (median of 10): {ms:.1f} ms", flush=True)
                    res[name]["latency_ms"] = min(ms, res[name].get("latency_ms", ms))
            for n in (200, 2000):
                for _ in range(args.rounds):
                    for name in names:
                        r = chains(loads[name], n, servers[name][0].pid, name)
                        if n not in res[name] or r["rate"] > res[name][n]["rate"]:
                            res[name][n] = r
            for _ in range(args.rounds):
                for name in names:
                    sec = loads[name].ask("fanout 1000", loads[name].procs[:1])[0]
                    print(f"  [{name}] fan-out of 1,000 activities: {sec:.2f} s", flush=True)
                    res[name]["fan_out_s"] = min(sec, res[name].get("fan_out_s", sec))
            for name in names:
                res[name]["rss"] = rss(servers[name][0].pid)
                print(f"  [{name}] server RSS {res[name]['rss']}", flush=True)
        finally:
            for load in loads.values():
                load.close()
            for name in ("durable", "durable-normal", "durable-pg"):
                if name in servers:
                    servers[name][0].terminate()
                    servers[name][0].wait()
            if pg_server:
                pg_server.stop()
            servers["in-memory"][0].stdin.close()
            servers["in-memory"][0].wait(timeout=30)

    print(f"\n== summary ({os.cpu_count()} CPUs, {args.procs} Python load process(es) per backend, "
          f"best of {args.rounds}, load average now {loadavg()})")
    print(f"{'backend':26} {'200 chains/s':>12} {'2000 chains/s':>13} {'fan-out 1k':>10} {'latency':>8} "
          f"{'server CPU/chain':>16}  server RSS")
    labels = {"durable": "durable sidecar (sqlite)", "durable-normal": "durable (sqlite, NORMAL)",
              "in-memory": "python in-memory backend",
              "durable-pg": "durable sidecar (postgres)"}
    for name in names:
        r = res[name]
        print(f"{labels[name]:26} {r[200]['rate']:12.0f} {r[2000]['rate']:13.0f} {r['fan_out_s']:9.2f}s "
              f"{r['latency_ms']:6.1f}ms {r[2000]['server_ms']:14.2f}ms  {r['rss']}")
    ours, theirs = res["durable"], res["in-memory"]
    for n in (200, 2000):
        ratio = ours[n]["rate"] / theirs[n]["rate"]
        print(f"chains/s ratio at {n}: {ratio:.2f}x (target {TARGET:.0f}x: {'met' if ratio >= TARGET else 'NOT met'})")
    normal = res["durable-normal"]
    print(f"synchronous=FULL (default) / NORMAL chains/s at 2000: {ours[2000]['rate'] / normal[2000]['rate']:.2f}x")
    if "durable-pg" in res:
        pg = res["durable-pg"]
        print(f"PostgreSQL / SQLite chains/s at 2000: {pg[2000]['rate'] / ours[2000]['rate']:.2f}x")
    cpu_ratio = theirs[2000]["server_ms"] / ours[2000]["server_ms"]
    print(f"server CPU per chain: in-memory backend / ours = {cpu_ratio:.1f}x; the Python workers+clients "
          f"cost {ours[2000]['python_ms']:.1f} ms CPU per chain (ours) vs {theirs[2000]['python_ms']:.1f} ms "
          f"(in-memory)")


def socket_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
