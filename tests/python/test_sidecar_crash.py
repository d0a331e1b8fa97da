"""Crash safety: kill -9 the sidecar mid-run, restart it on the same SQLite file (or PostgreSQL
database), and check that every orchestration still completes with the right output.

Run: cargo build --bin durable && .venv/bin/python -m pytest tests/python/test_sidecar_crash.py -q
"""

import time

from durabletask import client, task, worker

from conftest import Sidecar

N = 50


def slow_add(ctx: task.ActivityContext, pair):
    time.sleep(0.2)
    return pair[0] + pair[1]


def slow_chain(ctx: task.OrchestrationContext, n: int):
    total = n
    for i in range(3):
        total = yield ctx.call_activity(slow_add, input=[total, i + 1])
    return total


def make_worker(address: str) -> worker.TaskHubGrpcWorker:
    w = worker.TaskHubGrpcWorker(host_address=address)
    w.add_orchestrator(slow_chain)
    w.add_activity(slow_add)
    w.start()
    return w


def test_kill9_and_restart_completes_everything(tmp_path):
    kill9_and_restart(lambda port=None: Sidecar(tmp_path / "crash.db", port=port))


def test_kill9_and_restart_on_postgres_completes_everything(postgres_server):
    # The restarted sidecar takes over the partitions (their locks) the killed one held.
    url = postgres_server.database("crash")
    kill9_and_restart(lambda port=None: Sidecar(None, port=port, postgres=url))


def kill9_and_restart(make_sidecar):
    sc = make_sidecar().start()
    w = make_worker(sc.address)
    c = client.TaskHubGrpcClient(host_address=sc.address)
    ids = [c.schedule_new_orchestration(slow_chain, input=i, instance_id=f"crash-{i}") for i in range(N)]
    # Let some of the work finish, then pull the plug in the middle of the run.
    c.wait_for_orchestration_completion(ids[0], timeout=60)
    done_before = sum(
        1 for i in ids
        if c.get_orchestration_state(i, fetch_payloads=False).runtime_status
        == client.OrchestrationStatus.COMPLETED
    )
    sc.kill9()
    assert done_before < N, "the run finished before the crash; make the activities slower"
    w.stop()

    sc2 = make_sidecar(port=sc.port).start()
    try:
        w2 = make_worker(sc2.address)
        c2 = client.TaskHubGrpcClient(host_address=sc2.address)
        for n, iid in enumerate(ids):
            state = c2.wait_for_orchestration_completion(iid, timeout=120)
            assert state is not None, f"{iid} was lost in the crash"
            assert state.runtime_status == client.OrchestrationStatus.COMPLETED, state.failure_details
            assert state.serialized_output == str(n + 6)
        w2.stop()
    finally:
        sc2.stop()
