"""The delivery worker when what it stands on fails: in process, a real SQLite file, a real listener.

The store's faults here are real: another connection holds the file's write
lock (SQLite answers "database is locked" past the busy timeout), or the
store's rows hold what no envelope can be made of.
"""

import json
import logging
import sqlite3
import time

import pytest

from gateway import cli, config
from gateway.callbacks import delivery
from gateway.callbacks.delivery import IDLE_POLL_S, DeliveryWorker, Outcome
from gateway.callbacks.policy import ListenerPolicy
from gateway.exceptions import DeliveryStalled
from gateway.metrics import CALLBACKS_DELIVERED, WORKER_RESTARTS
from gateway.store import SqliteStore
from tests.test_callbacks import ACCOUNT, rest_callback

SERVICE = "StateService"


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "store.sqlite3"


@pytest.fixture
def store(store_path):
    # A short busy timeout: a locked file fails a write in 0.2 s, not 5.
    store = SqliteStore(store_path, busy_timeout_s=0.2)
    yield store
    store.close()


def settings(**callbacks):
    environ = {
        "M2MGW_CALLBACKS_BACKOFF_S": "0.05",
        "M2MGW_CALLBACKS_TIMEOUT_S": "2",
        **{f"M2MGW_CALLBACKS_{key.upper()}": str(value) for key, value in callbacks.items()},
    }
    return config.load(environ=environ)


def running_worker(store, settings):
    return DeliveryWorker(store, settings.callbacks, settings.store.retain_s, ListenerPolicy.from_config(settings)).start()


def add(store, request_id, imei="990000862471854"):
    body = rest_callback(request_id, imei)
    event = {key: value for key, value in body.items() if key not in ("username", "password")}
    assert store.add_callback(f"key-{request_id}", ACCOUNT, SERVICE, request_id, json.dumps(event), time.time())


def delivered_request_ids(listener):
    return [body.split(b"<RequestId>")[1].split(b"</RequestId>")[0].decode() for body in listener.acknowledged()]


def wait_until(condition, timeout_s=10, what="the condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} did not happen within {timeout_s} s")


class WriteLock:
    """Another process's long write transaction on the store's file: every write of the store fails meanwhile."""

    def __init__(self, path):
        self._db = sqlite3.connect(path, isolation_level=None)

    def __enter__(self):
        self._db.execute("BEGIN EXCLUSIVE")
        return self

    def __exit__(self, *exc):
        self._db.execute("ROLLBACK")
        self._db.close()


def restarts(loop):
    return WORKER_RESTARTS.labels(loop)._value.get()


def test_every_thread_outlives_a_failing_store_and_nothing_acknowledged_is_sent_twice(
    store, store_path, listener, caplog
):
    caplog.set_level(logging.INFO)
    store.put_registration(ACCOUNT, SERVICE, listener.url, "legacy", "pw")
    listener.delay_s = 1.5  # the first delivery is in flight when the store fails
    # A timeout well past that delay: a loaded machine must not turn the slow
    # acknowledgement into a failed attempt, which is rightly sent again.
    delivery_settings = settings(timeout_s=5)
    deliveries_before, store_restarts, renewal_restarts = (
        CALLBACKS_DELIVERED._value.get(), restarts("delivery-store"), restarts("claim-renewal")
    )

    def logged(phrase):
        return [record.getMessage() for record in caplog.records if phrase in record.getMessage()]

    worker = running_worker(store, delivery_settings)
    try:
        add(store, "r-before")
        wait_until(lambda: store.counts()["claimed"] == 1, what="the claim")
        with WriteLock(store_path):
            # The renewal of the claim in flight fails, the record of its acknowledgement
            # fails, and so, every time, the claims and housekeeping after it.
            wait_until(lambda: listener.acknowledged(), what="the acknowledgement")
            wait_until(
                lambda: restarts("claim-renewal") > renewal_restarts and restarts("delivery-store") > store_restarts + 3,
                what="failures of both store threads",
            )
            assert store.counts()["claimed"] == 1  # nothing could record it: still claimed
        listener.delay_s = 0
        add(store, "r-after")
        wait_until(lambda: store.counts()["delivered"] == 2, what="both delivered after the lock")
        assert all(thread.is_alive() for thread in worker._threads)
        # Each failed thread says it recovered once its next step returns: after its back-off (up to 2 s).
        wait_until(lambda: len(logged("recovered after")) >= len(logged("retrying with back-off")), what="every recovery")
        time.sleep(delivery_settings.callbacks.claim_lease_s / 10)  # a resend of r-before would show up here
    finally:
        worker.stop(timeout=5)
    # Acknowledged during the outage: recorded when the store came back, never sent again.
    assert delivered_request_ids(listener) == ["r-before", "r-after"]
    assert CALLBACKS_DELIVERED._value.get() - deliveries_before == 2
    failures, recoveries = logged("retrying with back-off"), logged("recovered after")
    # Once per outage and thread, not once per try (the store thread failed dozens of times).
    assert 2 <= len(failures) <= 5 and all("database is locked" in line for line in failures), failures
    assert len(recoveries) == len(failures), (failures, recoveries)


def test_a_poison_entry_fails_alone_and_is_dead_lettered_with_its_reason(
    store, store_path, listener, monkeypatch, capsys
):
    store.put_registration(ACCOUNT, SERVICE, listener.url, "legacy", "pw")
    add(store, "r-good-1")
    # Stored by a receiver that checked it; its body is no longer a callback (a bad
    # migration, a hand edit): no envelope can be built from it.
    assert store.add_callback("key-poison", ACCOUNT, SERVICE, "r-poison", '{"requestId": "r-poison"}', time.time())
    # And one whose request memory is garbage: the store lookup for it fails.
    add(store, "r-bad-memory", imei="990000862471855")
    with sqlite3.connect(store_path) as db:
        db.execute(
            "INSERT INTO requests (request_id, kind_spellings, remembered_at) VALUES ('r-bad-memory', '{not json', ?)",
            (time.time(),),
        )
    add(store, "r-good-2", imei="990000862471856")

    worker = running_worker(store, settings(max_attempts=3))
    try:
        wait_until(lambda: store.counts()["dead"] == 2, what="both poison entries dead")
    finally:
        worker.stop(timeout=5)

    assert sorted(delivered_request_ids(listener)) == ["r-good-1", "r-good-2"]
    dead = {entry.request_id: entry for entry in store.outbox("dead")}
    assert {request_id: entry.attempts for request_id, entry in dead.items()} == {"r-poison": 3, "r-bad-memory": 3}
    assert dead["r-poison"].last_error.startswith("no envelope could be built: RequestInvalid: deviceIds")
    assert dead["r-bad-memory"].last_error.startswith("no envelope could be built: JSONDecodeError")
    monkeypatch.setenv("M2MGW_STORE_PATH", str(store_path))
    assert cli.main(["callbacks", "dead"]) == 0
    listed = capsys.readouterr().out
    assert "r-poison" in listed and "no envelope could be built" in listed


def test_a_delivery_whose_claim_another_worker_took_is_not_counted_as_delivered(store, listener, caplog):
    caplog.set_level(logging.INFO)
    store.put_registration(ACCOUNT, SERVICE, listener.url, "legacy", "pw")
    add(store, "r-taken")
    callbacks = settings().callbacks
    worker = DeliveryWorker(store, callbacks, 100, ListenerPolicy())  # not started: driven by hand
    now, lease_s = time.time(), callbacks.claim_lease_s
    (mine,) = store.claim_due(worker._id, now=now, lease_s=lease_s, limit=1)
    # Its lease ran out (a long pause of this process): another worker took it over.
    (theirs,) = store.claim_due("another-worker", now=now + lease_s + 1, lease_s=lease_s, limit=1)
    assert theirs.id == mine.id
    delivered_before = CALLBACKS_DELIVERED._value.get()

    worker._unrecorded.append(Outcome(mine, 1, time.time(), None, 0.1))  # as the loop queues it
    worker._record_unrecorded()  # as the store thread records it

    assert CALLBACKS_DELIVERED._value.get() == delivered_before
    assert store.counts()["claimed"] == 1  # still theirs to settle
    lines = [record.getMessage() for record in caplog.records]
    assert any("another worker took the entry over" in line for line in lines)
    assert not any("delivered" in line and "r-taken" in line for line in lines)


def test_delivery_progress_stalls_while_every_delivery_under_way_is_stuck_and_recovers(store, listener):
    store.put_registration(ACCOUNT, SERVICE, listener.url, "legacy", "pw")
    listener.delay_s = 1.0
    worker = running_worker(store, settings(delivery_stall_s=0.5, timeout_s=5))
    try:
        worker.check_progress()  # a fresh worker is not stalled
        for n in range(40):
            add(store, f"r-{n}", imei=f"9900008624{n:05d}")
            worker.wake()

        def stalled():
            try:
                worker.check_progress()
            except DeliveryStalled:
                return True
            return False

        wait_until(stalled, what="a stall")
        listener.delay_s = 0
        wait_until(lambda: not stalled(), timeout_s=15, what="recovery")
        wait_until(lambda: store.counts()["delivered"] == 40, timeout_s=15, what="every delivery")
    finally:
        worker.stop(timeout=5)


def test_a_stop_ends_an_idle_worker_at_once(store):
    # Its loop and store thread wait for a nudge: stop() must nudge both, or they would sleep out their poll.
    for _ in range(5):
        worker = running_worker(store, settings())
        started = time.monotonic()
        worker.stop(timeout=5)
        assert time.monotonic() - started < IDLE_POLL_S / 2


class ClaimCountingStore(SqliteStore):
    """The real store, counting its claim transactions."""

    claims = 0

    def claim_due(self, *args, **kwargs):
        type(self).claims += 1
        return super().claim_due(*args, **kwargs)


def idle(worker):
    """Wait until ``worker`` has nothing under way, nothing waiting to start and no claim asked
    for, and will not claim again before its idle poll: what it does next, a wake-up starts."""
    wait_until(
        lambda: worker._claim_at > time.time()
        and not (worker._claiming or worker._woken or worker._sending or worker._handed or worker._claimed or worker._unrecorded),
        what="the worker idle",
    )


def test_a_stored_callback_costs_one_claim_for_it_and_one_that_finds_nothing_more(store_path, listener, monkeypatch):
    monkeypatch.setattr(delivery, "IDLE_POLL_S", 60.0)  # the worker does not look on its own meanwhile
    store = ClaimCountingStore(store_path)
    store.put_registration(ACCOUNT, SERVICE, listener.url, "legacy", "pw")
    worker = running_worker(store, settings())
    try:
        # Idle, not just done with its first claim: a claim still under way would see the
        # entry due and claim it without a wake-up.
        idle(worker)
        claims_before = store.claims
        add(store, "r-one")
        worker.wake()
        wait_until(lambda: store.counts()["delivered"] == 1, what="the delivery")
        idle(worker)
        # The wake-up's claim and the next (empty) one: several wake-ups while a claim
        # is under way would add one claim, not one each (the senders' did).
        assert store.claims - claims_before == 2
    finally:
        worker.stop(timeout=5)
        store.close()


def test_a_listener_url_that_cannot_be_sent_fails_its_attempts_without_echoing_its_query(store, listener, caplog):
    """A registration's URL with a space in its query (RegisterCallback takes any absolute
    URL): no request can carry it, and its query, a token as likely as not, is in no line."""
    caplog.set_level(logging.INFO)
    store.put_registration(ACCOUNT, SERVICE, listener.url + "?token=s3cret token", "legacy", "pw")
    add(store, "r-unsendable")
    worker = running_worker(store, settings(max_attempts=2))
    try:
        wait_until(lambda: store.counts()["dead"] == 1, what="the entry dead")
    finally:
        worker.stop(timeout=5)
    [dead] = store.outbox("dead")
    assert dead.last_error.startswith("listener unreachable (ValueError: the request target holds"), dead.last_error
    assert listener.acknowledged() == []
    lines = [record.getMessage() for record in caplog.records]
    assert any("r-unsendable" in line for line in lines)
    assert not [line for line in [*lines, dead.last_error] if "s3cret" in line]


def deliveries_despite_a_fault(step, store, count, **callbacks):
    """Run a worker whose ``step`` (a method) raises once where nothing should (a fault of the
    gateway's own) until ``count`` callbacks are delivered; how often its loop's supervision counted a fault."""

    def step_faulting_once(worker, *args):
        if not worker.faulted:
            worker.faulted = True
            raise RuntimeError(f"a fault in {step}")
        return getattr(DeliveryWorker, step)(worker, *args)

    faulting_once = type("FaultingOnce", (DeliveryWorker,), {"faulted": False, step: step_faulting_once})
    restarts_before = restarts("callback-delivery")
    configured = settings(**callbacks)
    worker = faulting_once(store, configured.callbacks, 3600, ListenerPolicy.from_config(configured)).start()
    try:
        wait_until(lambda: store.counts()["delivered"] == count, what=f"{count} delivered despite the fault")
    finally:
        worker.stop(timeout=5)
    return restarts("callback-delivery") - restarts_before


def test_an_exception_that_ends_the_loop_ends_no_delivery(store, listener, caplog):
    store.put_registration(ACCOUNT, SERVICE, listener.url, "legacy", "pw")
    add(store, "r-after-the-fault")
    # As it looks for what to claim, on the loop: the loop starts again.
    assert deliveries_despite_a_fault("_ask_to_claim", store, 1) == 1
    assert any("callback-delivery failed unexpectedly" in record.getMessage() for record in caplog.records)
    assert delivered_request_ids(listener) == ["r-after-the-fault"]


def test_an_exception_in_one_delivery_ends_neither_the_others_nor_it_for_good(store, listener, caplog):
    store.put_registration(ACCOUNT, SERVICE, listener.url, "legacy", "pw")
    for n in range(3):
        add(store, f"r-{n}", imei=f"99000086247185{n}")
    # As the first delivery makes its listener's client; its claim lapses within a second.
    assert deliveries_despite_a_fault("_listener_client", store, 3, claim_lease_s=1) == 1
    [failed] = [record for record in caplog.records if "its delivery failed unexpectedly" in record.getMessage()]
    assert failed.exc_info[0] is RuntimeError
    assert sorted(delivered_request_ids(listener)) == ["r-0", "r-1", "r-2"]
    assert len(listener.all()) == 3  # the failed one was never posted: posted once, when taken again
