"""The request memory: GoToStates remembered off the request thread, in batches, by a supervised writer.

A real SQLite file; the fault is real too: another connection holding the
file's write lock past the store's busy timeout.
"""

import logging
import time

import pytest

from gateway import request_memory
from gateway.request_memory import RequestMemory
from gateway.store import SqliteStore
from tests.test_delivery_faults import WriteLock, restarts, wait_until

NOW = 1_000_000.0


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "store.sqlite3"


def remembered(store_path, request_id):
    """As ``trace`` reads it: another connection to the file."""
    store = SqliteStore(store_path)
    try:
        return store.forwarded_request(request_id)
    finally:
        store.close()


def test_requests_without_spellings_are_written_by_the_writer_and_what_is_queued_at_stop_is_written(store_path):
    store = SqliteStore(store_path)
    memory = RequestMemory(store)  # the writer not started: nothing but stop() writes the queue
    for n in range(3):
        memory.remember(f"queued-{n}", {}, NOW + n, account="acct", devices=2)
    memory.remember("spelled", {"imei": "Imei"}, NOW, account=None, devices=1)

    # Spellings are flushed before remember returns: the callbacks may come at once.
    assert remembered(store_path, "spelled").kind_spellings == {"imei": "Imei"}
    assert [remembered(store_path, f"queued-{n}") for n in range(3)] == [None] * 3  # not on the request thread

    memory.stop()
    assert [remembered(store_path, f"queued-{n}").forwarded_at for n in range(3)] == [NOW, NOW + 1, NOW + 2]
    assert remembered(store_path, "queued-0").account == "acct"
    store.close()


def test_the_writer_writes_what_many_threads_queue_without_being_asked(store_path):
    store = SqliteStore(store_path)
    memory = RequestMemory(store).start()
    try:
        for n in range(50):
            memory.remember(f"r-{n}", {}, NOW, account=None, devices=1)
        wait_until(lambda: all(store.forwarded_request(f"r-{n}") for n in range(50)), what="all 50 remembered")
    finally:
        memory.stop()
        store.close()


def test_a_locked_store_neither_holds_the_request_nor_stops_the_writer(store_path, caplog):
    caplog.set_level(logging.INFO)
    store = SqliteStore(store_path, busy_timeout_s=1)
    memory = RequestMemory(store).start()
    before = restarts("request-memory")
    try:
        with WriteLock(store_path):
            started = time.monotonic()
            memory.remember("during", {}, NOW, account=None, devices=1)
            assert time.monotonic() - started < 0.5  # the answer does not wait out the busy timeout
            wait_until(lambda: "requestId=during: not remembered" in caplog.text, what="the lost request logged")
            wait_until(lambda: restarts("request-memory") > before, what="the writer's failure counted")
        memory.remember("after", {}, NOW + 1, account=None, devices=1)
        wait_until(lambda: remembered(store_path, "after") is not None, what="the writer healed")
    finally:
        memory.stop()
        store.close()
    assert remembered(store_path, "during") is None
    assert "request-memory failed" in caplog.text


def test_a_writer_stuck_in_the_store_holds_no_more_than_its_limit(store_path, caplog, monkeypatch):
    monkeypatch.setattr(request_memory, "MAX_QUEUED", 5)
    monkeypatch.setattr(request_memory, "GATHER_S", 0)  # the writer goes to the store with the first it takes
    store = SqliteStore(store_path, busy_timeout_s=30)  # the writer waits for the lock: stuck, not failing
    memory = RequestMemory(store).start()
    ids = [f"r-{n}" for n in range(10)]
    try:
        with WriteLock(store_path):
            memory.remember(ids[0], {}, NOW, account=None, devices=1)
            # In the store's transaction, holding its writer: past taking what else was queued.
            wait_until(lambda: store._writing.locked(), what="the writer stuck in the store with the first")
            for request_id in ids[1:]:  # 5 queued behind it, the rest refused
                memory.remember(request_id, {}, NOW, account=None, devices=1)
            refused = [request_id for request_id in ids if f"requestId={request_id}: not remembered" in caplog.text]
            assert refused == ids[6:]
        kept = [request_id for request_id in ids if request_id not in refused]
        wait_until(lambda: remembered(store_path, kept[-1]) is not None, what="the kept ones written once unstuck")
    finally:
        memory.stop()
        store.close()
    assert [request_id for request_id in ids if remembered(store_path, request_id) is not None] == kept
