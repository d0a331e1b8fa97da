"""One work item a worker cannot receive stalls nobody.

The Python SDK's worker refuses gRPC messages over 4 MiB (grpc's default receive limit). An
orchestration whose next work item is bigger (its history holds a 5 MiB activity result) makes
the worker's stream fail each time the item is sent. The sidecar gives up after a bounded number
of deliveries and fails that instance with an error naming the size; every other instance keeps
flowing.

Run: cargo build --bin durable && .venv/bin/python -m pytest tests/python/test_oversized_work_item.py -q
"""

import time

from durabletask import client, task, worker

from conftest import Sidecar

FIVE_MIB = 5 * 1024 * 1024


def big_result(ctx: task.ActivityContext, _) -> str:
    return "x" * FIVE_MIB


def hello(ctx: task.ActivityContext, name: str) -> str:
    return f"Hello {name}!"


def too_big(ctx: task.OrchestrationContext, _):
    data = yield ctx.call_activity(big_result)
    return len(data)


def chain(ctx: task.OrchestrationContext, _):
    a = yield ctx.call_activity(hello, input="Tokyo")
    b = yield ctx.call_activity(hello, input="Seattle")
    return [a, b]


def test_an_item_too_large_for_the_worker_fails_alone(tmp_path):
    sidecar = Sidecar(tmp_path / "oversized.db").start()
    w = worker.TaskHubGrpcWorker(host_address=sidecar.address)
    for orchestrator in (too_big, chain):
        w.add_orchestrator(orchestrator)
    w.add_activity(big_result)
    w.add_activity(hello)
    w.start()
    try:
        c = client.TaskHubGrpcClient(host_address=sidecar.address)
        big = c.schedule_new_orchestration(too_big)
        time.sleep(0.5)  # the big item is first in line
        chains = [c.schedule_new_orchestration(chain) for _ in range(20)]
        started = time.time()
        for iid in chains:
            state = c.wait_for_orchestration_completion(iid, timeout=60)
            assert state is not None and state.runtime_status == client.OrchestrationStatus.COMPLETED, state
            assert state.serialized_output == '["Hello Tokyo!", "Hello Seattle!"]'
        assert time.time() - started < 30, "ordinary instances were held up behind the big one"

        state = c.wait_for_orchestration_completion(big, timeout=60)
        assert state.runtime_status == client.OrchestrationStatus.FAILED, state
        message = state.failure_details.message
        assert "bytes" in message and "4 MiB" in message, message
        assert c.purge_orchestration(big).deleted_instance_count == 1
        # (Terminating such an instance before it fails: `stuck_items_terminate_at_once` in
        # durable-sidecar/tests/sidecar_rpc.rs, with a worker that drops its stream on purpose.)
    finally:
        w.stop()
        sidecar.stop()
