"""Replicas with the official Python SDK as client and worker: two `durable sidecar --postgres`
processes on one database, a Python worker on each, orchestrations (chains, sub-orchestrations
in other partitions, events raised through the other replica) started through one replica;
the other is killed with `kill -9` mid-run and everything still completes with the right
output, answered by the survivor.

Run: cargo build --bin durable && .venv/bin/python -m pytest tests/python/test_replicas.py -q
"""

import time

from durabletask import client, task, worker

from conftest import Sidecar

CHAINS = 60
PARENTS = 20
WAITERS = 20


def slow_add(ctx: task.ActivityContext, pair):
    time.sleep(0.1)
    return pair[0] + pair[1]


def slow_chain(ctx: task.OrchestrationContext, n: int):
    total = n
    for i in range(3):
        total = yield ctx.call_activity(slow_add, input=[total, i + 1])
    return total


def parent(ctx: task.OrchestrationContext, n: int):
    child = yield ctx.call_sub_orchestrator(slow_chain, input=n, instance_id=f"{ctx.instance_id}-child")
    return child * 10


def waiter(ctx: task.OrchestrationContext, n: int):
    given = yield ctx.wait_for_external_event("go")
    return n + given


def make_worker(address: str) -> worker.TaskHubGrpcWorker:
    w = worker.TaskHubGrpcWorker(host_address=address)
    w.add_orchestrator(slow_chain)
    w.add_orchestrator(parent)
    w.add_orchestrator(waiter)
    w.add_activity(slow_add)
    w.start()
    return w


def test_python_sdk_runs_on_replicas_and_survives_a_killed_one(postgres_server):
    url = postgres_server.database("python_replicas")
    a = Sidecar(None, postgres=url).start()
    b = Sidecar(None, postgres=url).start()
    try:
        time.sleep(3)  # the second replica takes its half of the partitions
        wa, wb = make_worker(a.address), make_worker(b.address)
        ca = client.TaskHubGrpcClient(host_address=a.address)
        cb = client.TaskHubGrpcClient(host_address=b.address)
        expected = {}
        for i in range(CHAINS):
            expected[ca.schedule_new_orchestration(slow_chain, input=i, instance_id=f"chain-{i}")] = str(i + 6)
        for i in range(PARENTS):
            expected[ca.schedule_new_orchestration(parent, input=i, instance_id=f"parent-{i}")] = str((i + 6) * 10)
        for i in range(WAITERS):
            expected[cb.schedule_new_orchestration(waiter, input=i, instance_id=f"waiter-{i}")] = str(i + 7)
        for i in range(WAITERS // 2):
            ca.raise_orchestration_event(f"waiter-{i}", "go", data=7)

        ca.wait_for_orchestration_completion("chain-0", timeout=60)
        done_before = sum(
            1 for iid in expected
            if ca.get_orchestration_state(iid, fetch_payloads=False).runtime_status
            == client.OrchestrationStatus.COMPLETED
        )
        b.kill9()
        wb.stop()
        assert done_before < len(expected), "the run finished before the kill; make the activities slower"
        for i in range(WAITERS // 2, WAITERS):
            ca.raise_orchestration_event(f"waiter-{i}", "go", data=7)

        for iid, output in expected.items():
            state = ca.wait_for_orchestration_completion(iid, timeout=120)
            assert state is not None, f"{iid} was lost with the killed replica"
            assert state.runtime_status == client.OrchestrationStatus.COMPLETED, (iid, state.failure_details)
            assert state.serialized_output == output, iid
        wa.stop()
    finally:
        a.stop()
        b.stop()
