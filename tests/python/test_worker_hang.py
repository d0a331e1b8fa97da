"""A stopped worker loses its work to a healthy one.

Worker A (its own process) takes work items, then is stopped with SIGSTOP: its connection stays
open but its gRPC stack no longer answers the sidecar's HTTP/2 pings. After the keepalive
timeout the sidecar closes A's connection and gives the work A held to worker B. When A is
resumed, its late completions are refused (NOT_FOUND) and change nothing.

Run: cargo build --bin durable && .venv/bin/python -m pytest tests/python/test_worker_hang.py -q
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from durabletask import client, task, worker

from conftest import Sidecar

N = 40
HERE = Path(__file__).parent


def slow_double(ctx: task.ActivityContext, n: int) -> int:
    time.sleep(0.3)
    return 2 * n


def doubled(ctx: task.OrchestrationContext, n: int):
    return (yield ctx.call_activity(slow_double, input=n))


WORKER_A = f"""
import sys, time
sys.path.insert(0, {str(HERE)!r})
from durabletask import worker
from test_worker_hang import doubled, slow_double
w = worker.TaskHubGrpcWorker(host_address=sys.argv[1])
w.add_orchestrator(doubled)
w.add_activity(slow_double)
w.start()
print("ready", flush=True)
time.sleep(3600)
"""


def test_a_stopped_worker_loses_its_work_to_a_healthy_one(tmp_path):
    sidecar = Sidecar(tmp_path / "hang.db", args=("--keepalive", "1")).start()
    a = subprocess.Popen([sys.executable, "-c", WORKER_A, sidecar.address],
                         stdout=subprocess.PIPE, text=True)
    b = None
    try:
        assert a.stdout.readline().strip() == "ready"
        c = client.TaskHubGrpcClient(host_address=sidecar.address)
        ids = [c.schedule_new_orchestration(doubled, input=i) for i in range(N)]
        time.sleep(1.0)  # A has taken work items and is busy with them
        os.kill(a.pid, signal.SIGSTOP)
        started = time.time()
        b = worker.TaskHubGrpcWorker(host_address=sidecar.address)
        b.add_orchestrator(doubled)
        b.add_activity(slow_double)
        b.start()
        for i, iid in enumerate(ids):
            state = c.wait_for_orchestration_completion(iid, timeout=90)
            assert state is not None and state.runtime_status == client.OrchestrationStatus.COMPLETED, state
            assert state.serialized_output == str(2 * i)
        took = time.time() - started
        assert took < 60, f"B took {took:.0f} s to finish A's work"
        # A wakes up: whatever it completes now is refused, and nothing changes.
        os.kill(a.pid, signal.SIGCONT)
        time.sleep(3)
        for i, iid in enumerate(ids):
            assert c.get_orchestration_state(iid).serialized_output == str(2 * i)
        assert a.poll() is None, "worker A must survive having its late completions refused"
    finally:
        os.kill(a.pid, signal.SIGCONT)
        a.kill()
        a.wait()
        if b:
            b.stop()
        sidecar.stop()
