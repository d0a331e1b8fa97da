"""Durable entities of the official durabletask Python SDK (client + worker) against our sidecar.

Function and class entities; signal, call and lock from orchestrations; client signal, get,
query and clean; delayed signals; failures (rolled back, and locks released when the holder
fails); entities starting orchestrations; entity work-item filters; and the SDK's scheduled
tasks, which are built on entities.

Run: cargo build --bin durable && .venv/bin/python -m pytest tests/python/test_entities_interop.py -q
"""

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from durabletask import client, entities, task, worker
from durabletask.scheduled import ScheduledTaskClient, ScheduleCreationOptions, ScheduleStatus

from conftest import Sidecar, storage_sidecar


def counter(ctx: entities.EntityContext, value):
    """Function entity."""
    state = ctx.get_state(int, 0)
    if ctx.operation == "add":
        ctx.set_state(state + value)
    elif ctx.operation == "get":
        return state
    elif ctx.operation == "reset":
        ctx.set_state(0)
    elif ctx.operation == "delete":
        ctx.set_state(None)
    elif ctx.operation == "start_report":
        return ctx.schedule_new_orchestration("report", input=state)
    elif ctx.operation == "add_later":
        ctx.signal_entity(ctx.entity_id, "add", value, signal_time=datetime.now(timezone.utc)
                          + timedelta(seconds=1))
    return None


class Account(entities.DurableEntity):
    """Class entity."""

    def deposit(self, amount: int):
        self.set_state(self.get_state(int, 0) + amount)

    def withdraw(self, amount: int):
        balance = self.get_state(int, 0)
        self.set_state(balance - amount)  # rolled back by the failure below
        if amount > balance:
            raise ValueError(f"insufficient funds: {balance} < {amount}")

    def balance(self) -> int:
        return self.get_state(int, 0)


def report(ctx: task.OrchestrationContext, value):
    return f"reported {value}"


def use_counter(ctx: task.OrchestrationContext, key: str):
    target = entities.EntityInstanceId("counter", key)
    ctx.signal_entity(target, "add", 5)
    yield ctx.call_entity(target, "add", 2)
    value = yield ctx.call_entity(target, "get")
    return value


def transfer(ctx: task.OrchestrationContext, args):
    source, target, amount = args
    a = entities.EntityInstanceId("Account", source)
    b = entities.EntityInstanceId("Account", target)
    with (yield ctx.lock_entities([a, b])):
        balance = yield ctx.call_entity(a, "balance")
        if balance < amount:
            return "skipped"
        yield ctx.call_entity(a, "withdraw", amount)
        yield ctx.call_entity(b, "deposit", amount)
    return "moved"


def withdraw_too_much(ctx: task.OrchestrationContext, key: str):
    a = entities.EntityInstanceId("Account", key)
    try:
        yield ctx.call_entity(a, "withdraw", 1_000_000)
    except task.TaskFailedError as e:
        return f"caught: {e.details.message}"
    return "no failure"


def lock_then_fail(ctx: task.OrchestrationContext, key: str):
    a = entities.EntityInstanceId("Account", key)
    with (yield ctx.lock_entities([a])):
        yield ctx.call_entity(a, "withdraw", 1_000_000)  # fails: the orchestration fails
    return "unreachable"


_scheduled_runs: list = []
_scheduled_lock = threading.Lock()


def scheduled_target(ctx: task.OrchestrationContext, value):
    if not ctx.is_replaying:
        with _scheduled_lock:
            _scheduled_runs.append(value)
    return value


@pytest.fixture(scope="module", params=["memory", "postgres"])
def sidecar(request, tmp_path_factory):
    s = storage_sidecar(request, tmp_path_factory)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def hub(sidecar):
    _scheduled_runs.clear()  # scheduled-task runs are counted per storage
    w = worker.TaskHubGrpcWorker(host_address=sidecar.address)
    w.add_entity(counter)
    w.add_entity(Account)
    for orchestrator in (report, use_counter, transfer, withdraw_too_much, lock_then_fail,
                         scheduled_target):
        w.add_orchestrator(orchestrator)
    w.configure_scheduled_tasks()
    w.start()
    c = client.TaskHubGrpcClient(host_address=sidecar.address)
    yield c
    w.stop()


def wait_until(predicate, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def state_of(c, name, key):
    meta = c.get_entity(entities.EntityInstanceId(name, key), include_state=True)
    return meta.get_state(int) if meta else None


def run(c, orchestrator, input=None):
    iid = c.schedule_new_orchestration(orchestrator, input=input)
    state = c.wait_for_orchestration_completion(iid, timeout=60)
    assert state is not None
    return state


def test_function_entity_from_orchestration_and_client(hub):
    state = run(hub, use_counter, "f1")
    assert state.runtime_status == client.OrchestrationStatus.COMPLETED, state.failure_details
    assert state.serialized_output == "7"
    hub.signal_entity(entities.EntityInstanceId("counter", "f1"), "add", input=3)
    assert wait_until(lambda: state_of(hub, "counter", "f1") == 10)
    hub.signal_entity(entities.EntityInstanceId("counter", "f1"), "delete")
    wait_until(lambda: hub.get_entity(entities.EntityInstanceId("counter", "f1")) is None)


def test_class_entity_transfers_in_critical_sections_lose_nothing(hub):
    for key in ("alice", "bob"):
        hub.signal_entity(entities.EntityInstanceId("Account", key), "deposit", input=100)
    ids = [hub.schedule_new_orchestration(transfer, input=["alice", "bob", 30] if i % 2 == 0
                                          else ["bob", "alice", 20]) for i in range(8)]
    for iid in ids:
        state = hub.wait_for_orchestration_completion(iid, timeout=60)
        assert state.runtime_status == client.OrchestrationStatus.COMPLETED, state.failure_details
    balances = [state_of(hub, "account", key) for key in ("alice", "bob")]
    assert sum(balances) == 200, balances
    # The release that ends a critical section is a message the completing orchestration sends
    # to each entity, applied by the entity's own partition after the completion is visible.
    def released(key):
        meta = hub.get_entity(entities.EntityInstanceId("account", key))
        return meta.backlog_queue_size == 0 and not meta._locked_by

    for key in ("alice", "bob"):
        assert wait_until(lambda: released(key), timeout=10), "every lock was released"


def test_failed_operations_roll_back_and_failing_holders_release_locks(hub):
    hub.signal_entity(entities.EntityInstanceId("Account", "carol"), "deposit", input=50)
    wait_until(lambda: state_of(hub, "account", "carol") == 50)
    state = run(hub, withdraw_too_much, "carol")
    assert state.serialized_output.startswith('"caught:'), state.serialized_output
    assert "insufficient funds: 50 < 1000000" in state.serialized_output
    assert state_of(hub, "account", "carol") == 50, "the failed withdrawal was rolled back"

    state = run(hub, lock_then_fail, "carol")
    assert state.runtime_status == client.OrchestrationStatus.FAILED
    # The lock died with its holder: a new critical section over the same account proceeds.
    state = run(hub, transfer, ["carol", "dave", 10])
    assert state.runtime_status == client.OrchestrationStatus.COMPLETED
    assert state.serialized_output == '"moved"'


def test_delayed_signals_and_entities_starting_orchestrations(hub):
    key = entities.EntityInstanceId("counter", "delayed")
    asked = time.time()
    hub.signal_entity(key, "add_later", input=4)
    wait_until(lambda: state_of(hub, "counter", "delayed") == 4)
    assert time.time() - asked >= 1.0, "delivered no earlier than asked"
    hub.signal_entity(key, "add", input=1,
                      signal_time=datetime.now(timezone.utc) + timedelta(milliseconds=300))
    wait_until(lambda: state_of(hub, "counter", "delayed") == 5)

    hub.signal_entity(key, "start_report")
    started = wait_until(lambda: [s for s in hub.get_all_orchestration_states(
        client.OrchestrationQuery(fetch_inputs_and_outputs=True))
        if s.name == "report" and s.runtime_status == client.OrchestrationStatus.COMPLETED])
    assert started[0].serialized_output == '"reported 5"'


def test_query_and_clean_entity_storage(hub):
    for i in range(5):
        hub.signal_entity(entities.EntityInstanceId("counter", f"q{i}"), "add", input=i + 1)
    wait_until(lambda: state_of(hub, "counter", "q4") == 5)
    found = hub.get_all_entities(client.EntityQuery(instance_id_starts_with="@counter@q",
                                                    include_state=True, page_size=2))
    assert [str(e.id) for e in found] == [f"@counter@q{i}" for i in range(5)]
    assert [e.get_state(int) for e in found] == [1, 2, 3, 4, 5]
    result = hub.clean_entity_storage()
    assert result.empty_entities_removed == 0
    assert result.orphaned_locks_released == 0


def test_entity_work_items_honour_filters(sidecar, hub):
    # A second worker that only takes `account` entities never receives counter work.
    only_accounts = worker.TaskHubGrpcWorker(host_address=sidecar.address)
    only_accounts.add_entity(Account)
    only_accounts.use_work_item_filters()
    only_accounts.start()
    try:
        for i in range(20):
            hub.signal_entity(entities.EntityInstanceId("counter", "filtered"), "add", input=1)
        assert wait_until(lambda: state_of(hub, "counter", "filtered") == 20)
    finally:
        only_accounts.stop()


def test_scheduled_tasks_built_on_entities(hub):
    scheduled = ScheduledTaskClient(hub)
    schedule = scheduled.create_schedule(ScheduleCreationOptions(
        schedule_id="every-second",
        orchestration_name=task.get_name(scheduled_target),
        interval=timedelta(seconds=1),
        orchestration_input="tick",
        start_at=datetime.now(timezone.utc),
        start_immediately_if_late=True,
    ))
    wait_until(lambda: len(_scheduled_runs) >= 2)
    description = schedule.describe()
    assert description.status == ScheduleStatus.ACTIVE
    assert description.last_run_at is not None
    schedule.pause()
    assert schedule.describe().status == ScheduleStatus.PAUSED
    schedule.delete()
    assert scheduled.get_schedule("every-second") is None
