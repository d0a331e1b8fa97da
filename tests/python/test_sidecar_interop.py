"""The official durabletask Python SDK (client + worker) against our Rust sidecar.

Run: cargo build --bin durable && .venv/bin/python -m pytest tests/python -q
"""

import time
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from durabletask import client, task, worker

from conftest import Sidecar, storage_sidecar

# ---------------------------------------------------------------------------------------------
# Orchestrators and activities
# ---------------------------------------------------------------------------------------------


def hello(ctx: task.ActivityContext, name: str) -> str:
    return f"Hello {name}!"


def double(ctx: task.ActivityContext, n: int) -> int:
    return n * 2


_flaky_calls: dict[str, int] = {}


def flaky(ctx: task.ActivityContext, key: str) -> str:
    _flaky_calls[key] = _flaky_calls.get(key, 0) + 1
    if _flaky_calls[key] < 3:
        raise ValueError(f"attempt {_flaky_calls[key]} fails")
    return f"ok after {_flaky_calls[key]}"


def always_fails(ctx: task.ActivityContext, _) -> None:
    raise RuntimeError("boom")


def chain(ctx: task.OrchestrationContext, _):
    a = yield ctx.call_activity(hello, input="Tokyo")
    b = yield ctx.call_activity(hello, input="Seattle")
    c = yield ctx.call_activity(hello, input="London")
    return [a, b, c]


def fan_out(ctx: task.OrchestrationContext, n: int):
    tasks = [ctx.call_activity(double, input=i) for i in range(n)]
    results = yield task.when_all(tasks)
    return sum(results)


def wait_event(ctx: task.OrchestrationContext, _):
    value = yield ctx.wait_for_external_event("approve")
    return f"approved: {value}"


def timer_orch(ctx: task.OrchestrationContext, seconds: float):
    start = ctx.current_utc_datetime
    yield ctx.create_timer(timedelta(seconds=seconds))
    return (ctx.current_utc_datetime - start).total_seconds()


def race(ctx: task.OrchestrationContext, _):
    event = ctx.wait_for_external_event("go")
    timeout = ctx.create_timer(timedelta(seconds=30))
    winner = yield task.when_any([event, timeout])
    return "event" if winner == event else "timeout"


def retry_orch(ctx: task.OrchestrationContext, key: str):
    policy = task.RetryPolicy(first_retry_interval=timedelta(milliseconds=200), max_number_of_attempts=5)
    result = yield ctx.call_activity(flaky, input=key, retry_policy=policy)
    return result


def failing_orch(ctx: task.OrchestrationContext, _):
    yield ctx.call_activity(always_fails, input=None)


def child(ctx: task.OrchestrationContext, n: int):
    r = yield ctx.call_activity(double, input=n)
    return r + 1


def parent(ctx: task.OrchestrationContext, _):
    results = yield task.when_all([ctx.call_sub_orchestrator(child, input=i) for i in range(3)])
    return results


def counter(ctx: task.OrchestrationContext, n: int):
    if n < 5:
        yield ctx.create_timer(timedelta(milliseconds=10))
        ctx.continue_as_new(n + 1)
        return None
    return n


def status_orch(ctx: task.OrchestrationContext, _):
    ctx.set_custom_status({"stage": "waiting"})
    yield ctx.wait_for_external_event("done")
    ctx.set_custom_status({"stage": "done"})
    return "finished"


def long_child(ctx: task.OrchestrationContext, _):
    yield ctx.wait_for_external_event("never")


def long_parent(ctx: task.OrchestrationContext, _):
    yield ctx.call_sub_orchestrator(long_child, instance_id=f"{ctx.instance_id}-child")


def counter_events(ctx: task.OrchestrationContext, _):
    total = 0
    for _ in range(3):
        v = yield ctx.wait_for_external_event("add")
        total += v
    return total


_rewind_fail = {"on": True}


def rewindable(ctx: task.ActivityContext, _):
    if _rewind_fail["on"]:
        raise RuntimeError("transient")
    return "recovered"


def rewind_orch(ctx: task.OrchestrationContext, _):
    a = yield ctx.call_activity(hello, input="first")
    b = yield ctx.call_activity(rewindable, input=None)
    return [a, b]


def rewind_child(ctx: task.OrchestrationContext, _):
    return (yield ctx.call_activity(rewindable, input=None))


def rewind_parent(ctx: task.OrchestrationContext, _):
    child_id = f"{ctx.instance_id}-child"
    return (yield ctx.call_sub_orchestrator(rewind_child, instance_id=child_id))


ORCHESTRATORS = [chain, fan_out, wait_event, timer_orch, race, retry_orch, failing_orch, child, parent,
                 counter, status_orch, long_child, long_parent, counter_events, rewind_orch,
                 rewind_child, rewind_parent]
ACTIVITIES = [hello, double, flaky, always_fails, rewindable]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def sidecar(request, tmp_path_factory):
    sc = storage_sidecar(request, tmp_path_factory)
    yield sc
    sc.stop()


@pytest.fixture(scope="module")
def c(sidecar):
    _flaky_calls.clear()  # the activities' call counts start over for every storage
    w = worker.TaskHubGrpcWorker(host_address=sidecar.address)
    for o in ORCHESTRATORS:
        w.add_orchestrator(o)
    for a in ACTIVITIES:
        w.add_activity(a)
    w.start()
    cl = client.TaskHubGrpcClient(host_address=sidecar.address)
    yield cl
    w.stop()


def run(c, orch, inp=None, timeout=60, **kw):
    iid = c.schedule_new_orchestration(orch, input=inp, **kw)
    state = c.wait_for_orchestration_completion(iid, timeout=timeout)
    assert state is not None
    return state


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_chaining(c):
    state = run(c, chain)
    assert state.runtime_status == client.OrchestrationStatus.COMPLETED
    assert state.serialized_output == '["Hello Tokyo!", "Hello Seattle!", "Hello London!"]'


def test_fan_out_fan_in_1000(c):
    state = run(c, fan_out, 1000, timeout=120)
    assert state.runtime_status == client.OrchestrationStatus.COMPLETED
    assert state.serialized_output == str(sum(2 * i for i in range(1000)))


def test_external_event(c):
    iid = c.schedule_new_orchestration(wait_event)
    c.wait_for_orchestration_start(iid, timeout=30)
    c.raise_orchestration_event(iid, "approve", data="yes")
    state = c.wait_for_orchestration_completion(iid, timeout=30)
    assert state.serialized_output == '"approved: yes"'


def test_raise_event_unknown_instance_is_not_found(c):
    with pytest.raises(grpc.RpcError) as e:
        c.raise_orchestration_event("no-such-instance", "x", data=1)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_timer(c):
    t0 = time.monotonic()
    state = run(c, timer_orch, 1.0)
    assert state.runtime_status == client.OrchestrationStatus.COMPLETED
    assert float(state.serialized_output) >= 1.0
    assert time.monotonic() - t0 >= 1.0


def test_when_any_event_wins(c):
    iid = c.schedule_new_orchestration(race)
    c.wait_for_orchestration_start(iid, timeout=30)
    c.raise_orchestration_event(iid, "go", data=None)
    state = c.wait_for_orchestration_completion(iid, timeout=30)
    assert state.serialized_output == '"event"'


def test_retry_policy(c):
    state = run(c, retry_orch, "k1")
    assert state.runtime_status == client.OrchestrationStatus.COMPLETED
    assert state.serialized_output == '"ok after 3"'


def test_failure_details(c):
    state = run(c, failing_orch)
    assert state.runtime_status == client.OrchestrationStatus.FAILED
    assert "boom" in state.failure_details.message


def test_sub_orchestrations(c):
    iid = c.schedule_new_orchestration(parent)
    state = c.wait_for_orchestration_completion(iid, timeout=60)
    assert state.runtime_status == client.OrchestrationStatus.COMPLETED
    assert state.serialized_output == "[1, 3, 5]"
    children = c.get_all_orchestration_states(client.OrchestrationQuery(instance_id_prefix=f"{iid}:"))
    assert len(children) == 3


def test_continue_as_new(c):
    iid = c.schedule_new_orchestration(counter, input=0)
    state = c.wait_for_orchestration_completion(iid, timeout=60)
    assert state.runtime_status == client.OrchestrationStatus.COMPLETED
    assert state.serialized_output == "5"
    assert state.serialized_input == "5"


def test_custom_status(c):
    iid = c.schedule_new_orchestration(status_orch)
    c.wait_for_orchestration_start(iid, timeout=30)
    deadline = time.monotonic() + 30
    st = c.get_orchestration_state(iid)
    while st.serialized_custom_status is None and time.monotonic() < deadline:
        # The first episode sets the status; there is no API to wait for a custom status.
        time.sleep(0.05)
        st = c.get_orchestration_state(iid)
    assert st.serialized_custom_status == '{"stage": "waiting"}'
    c.raise_orchestration_event(iid, "done")
    st = c.wait_for_orchestration_completion(iid, timeout=30)
    assert st.serialized_custom_status == '{"stage": "done"}'


def test_terminate_recursive(c):
    iid = c.schedule_new_orchestration(long_parent)
    c.wait_for_orchestration_start(iid, timeout=30)
    child_state = c.wait_for_orchestration_start(f"{iid}-child", timeout=30)
    assert child_state is not None
    c.terminate_orchestration(iid, output="stopped", recursive=True)
    state = c.wait_for_orchestration_completion(iid, timeout=30)
    assert state.runtime_status == client.OrchestrationStatus.TERMINATED
    assert state.serialized_output == '"stopped"'
    child = c.wait_for_orchestration_completion(f"{iid}-child", timeout=30)
    assert child.runtime_status == client.OrchestrationStatus.TERMINATED


def test_suspend_resume(c):
    iid = c.schedule_new_orchestration(counter_events)
    c.wait_for_orchestration_start(iid, timeout=30)
    c.raise_orchestration_event(iid, "add", data=1)
    c.suspend_orchestration(iid)
    assert c.get_orchestration_state(iid).runtime_status == client.OrchestrationStatus.SUSPENDED
    c.raise_orchestration_event(iid, "add", data=2)
    c.raise_orchestration_event(iid, "add", data=3)
    with pytest.raises(TimeoutError):
        c.wait_for_orchestration_completion(iid, timeout=1)
    assert c.get_orchestration_state(iid).runtime_status == client.OrchestrationStatus.SUSPENDED
    c.resume_orchestration(iid)
    state = c.wait_for_orchestration_completion(iid, timeout=30)
    assert state.runtime_status == client.OrchestrationStatus.COMPLETED
    assert state.serialized_output == "6"


def test_purge_single_and_by_filter(c):
    iid = run(c, chain).instance_id
    assert c.purge_orchestration(iid).deleted_instance_count == 1
    assert c.get_orchestration_state(iid) is None
    # Running instances are never purged: the sidecar says why.
    running = c.schedule_new_orchestration(wait_event)
    c.wait_for_orchestration_start(running, timeout=30)
    with pytest.raises(grpc.RpcError) as refused:
        c.purge_orchestration(running)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "terminate it first" in refused.value.details()
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    ids = [run(c, chain).instance_id for _ in range(3)]
    result = c.purge_orchestrations_by(created_time_from=since,
                                       runtime_status=[client.OrchestrationStatus.COMPLETED])
    assert result.deleted_instance_count >= 3
    assert all(c.get_orchestration_state(i) is None for i in ids)
    assert c.get_orchestration_state(running) is not None
    c.terminate_orchestration(running)


def test_query_paging(c):
    prefix = f"page-{time.time_ns()}-"
    for i in range(7):
        run(c, chain, instance_id=f"{prefix}{i}")
    states = c.get_all_orchestration_states(client.OrchestrationQuery(instance_id_prefix=prefix,
                                                                      max_instance_count=3))
    assert sorted(s.instance_id for s in states) == [f"{prefix}{i}" for i in range(7)]
    # Raw paging: 3 + 3 + 1 with continuation tokens.
    from durabletask.internal import orchestrator_service_pb2 as pb
    stub = c._stub
    seen, token, pages = [], None, 0
    while True:
        q = pb.InstanceQuery(maxInstanceCount=3, instanceIdPrefix=pb.google_dot_protobuf_dot_wrappers__pb2.StringValue(value=prefix) if hasattr(pb, "google_dot_protobuf_dot_wrappers__pb2") else None)
        if token is not None:
            q.continuationToken.value = token
        resp = stub.QueryInstances(pb.QueryInstancesRequest(query=q))
        seen += [s.instanceId for s in resp.orchestrationState]
        pages += 1
        if not resp.HasField("continuationToken"):
            break
        token = resp.continuationToken.value
    assert pages == 3
    assert sorted(seen) == [f"{prefix}{i}" for i in range(7)]
    page = c.list_instance_ids(page_size=2)
    assert len(page.items) == 2 and page.continuation_token


def test_restart(c):
    first = run(c, chain)
    new_id = c.restart_orchestration(first.instance_id, restart_with_new_instance_id=True)
    assert new_id != first.instance_id
    assert c.wait_for_orchestration_completion(new_id, timeout=30).serialized_output == first.serialized_output
    same = c.restart_orchestration(first.instance_id)
    assert same == first.instance_id
    assert c.wait_for_orchestration_completion(same, timeout=30).runtime_status == client.OrchestrationStatus.COMPLETED
    running = c.schedule_new_orchestration(wait_event)
    c.wait_for_orchestration_start(running, timeout=30)
    with pytest.raises(grpc.RpcError) as e:
        c.restart_orchestration(running)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    c.terminate_orchestration(running)


def test_rewind(c):
    _rewind_fail["on"] = True
    state = run(c, rewind_orch)
    assert state.runtime_status == client.OrchestrationStatus.FAILED
    _rewind_fail["on"] = False
    c.rewind_orchestration(state.instance_id, reason="fixed")
    state = c.wait_for_orchestration_completion(state.instance_id, timeout=30)
    assert state.runtime_status == client.OrchestrationStatus.COMPLETED
    assert state.serialized_output == '["Hello first!", "recovered"]'


def test_rewind_recreates_a_purged_sub_orchestration(c):
    _rewind_fail["on"] = True
    state = run(c, rewind_parent)
    assert state.runtime_status == client.OrchestrationStatus.FAILED
    child_id = f"{state.instance_id}-child"
    assert c.purge_orchestration(child_id).deleted_instance_count == 1
    _rewind_fail["on"] = False
    c.rewind_orchestration(state.instance_id, reason="fixed")
    state = c.wait_for_orchestration_completion(state.instance_id, timeout=30)
    assert state.runtime_status == client.OrchestrationStatus.COMPLETED, state.failure_details
    assert state.serialized_output == '"recovered"'
    assert c.get_orchestration_state(child_id).runtime_status == client.OrchestrationStatus.COMPLETED


def test_scheduled_start(c):
    start_at = datetime.now(timezone.utc) + timedelta(seconds=2)
    iid = c.schedule_new_orchestration(chain, start_at=start_at)
    assert c.get_orchestration_state(iid).runtime_status == client.OrchestrationStatus.PENDING
    state = c.wait_for_orchestration_completion(iid, timeout=30)
    assert state.runtime_status == client.OrchestrationStatus.COMPLETED
    history = c.get_orchestration_history(iid)
    first_started = next(e for e in history if type(e).__name__ == "OrchestratorStartedEvent")
    ts = first_started.timestamp
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    assert ts >= start_at - timedelta(milliseconds=5), "the orchestration ran before its start time"


def test_duplicate_instance_id(c):
    iid = f"dup-{time.time_ns()}"
    run(c, chain, instance_id=iid)
    with pytest.raises(grpc.RpcError) as e:
        c.schedule_new_orchestration(chain, instance_id=iid)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
