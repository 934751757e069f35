"""Group commit of callback receipts and of delivery outcomes: in process, a real SQLite file.

The faults are real: another connection holds the file's write lock. While
it does, writers queue; once it goes, what queued is written together, in
the transaction that waited for it, each caller told its own result. While
it stays past the busy timeout, every caller of the batch hears the store
is unavailable and nothing is written.
"""

import concurrent.futures
import functools
import json
import threading
import time

import pytest
from werkzeug.test import Client

from gateway.callbacks.receiver import CallbackReceiver
from gateway.exceptions import StoreUnavailable
from gateway.store import SqliteStore
from gateway.store.group_commit import GroupCommit
from gateway.store.records import ReceivedCallback, Settlement
from tests.test_callbacks import ACCOUNT, THINGSPACE_PASSWORD, THINGSPACE_USER, rest_callback
from tests.test_delivery_faults import WriteLock, wait_until

SERVICE = "StateService"
CALLBACK_PATH = f"/{ACCOUNT}/{SERVICE}"


class CountingStore(SqliteStore):
    """The real store, counting its outbox transactions: how many were begun, and how many rows each gathered."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.begun = 0
        self.batches = []

    def _write_gathered(self, gather):
        self.begun += 1

        def counted():
            rows = gather()
            self.batches.append(len(rows))
            return rows

        return super()._write_gathered(counted)


def received(n):
    return ReceivedCallback(f"key-{n}", ACCOUNT, SERVICE, f"r-{n}", json.dumps({"requestId": f"r-{n}"}), time.time())


def queued(group):
    return len(group._queued)


def test_rows_queued_while_a_transaction_waits_for_the_write_lock_are_written_in_it_each_with_its_own_result(tmp_path):
    path = tmp_path / "store.sqlite3"
    store = CountingStore(path, busy_timeout_s=10)
    group = GroupCommit(store._write_gathered)
    write = functools.partial(group.write, wait_s=10, what="the callback")
    rows = [received(0)] + [received(n) for n in range(1, 8)] + [received(3)]  # r-3 twice
    try:
        with concurrent.futures.ThreadPoolExecutor(len(rows)) as pool:
            with WriteLock(path):
                first = pool.submit(write, rows[0])
                wait_until(lambda: store.begun == 1, what="the first transaction")
                rest = [pool.submit(write, row) for row in rows[1:]]
                wait_until(lambda: queued(group) == len(rows), what="the others queued")
                assert store.batches == []  # nothing taken while the lock is held elsewhere
            results = [first.result(timeout=10)] + [future.result(timeout=10) for future in rest]
        assert (store.begun, store.batches) == (1, [len(rows)])  # one transaction for all that queued
        assert results == [True] * 8 + [False]  # the repeated key: a duplicate, stored once
        assert store.counts()["pending"] == 8
    finally:
        store.close()


def test_a_write_lock_held_past_the_busy_timeout_fails_every_row_of_the_batch_and_writes_none(tmp_path):
    path = tmp_path / "store.sqlite3"
    store = CountingStore(path, busy_timeout_s=0.3)
    group = GroupCommit(store._write_gathered)
    write = functools.partial(group.write, wait_s=10, what="the callback")
    try:
        with WriteLock(path), concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(write, received(n)) for n in range(4)]
            errors = [future.exception(timeout=10) for future in futures]
        assert all(isinstance(error, StoreUnavailable) and "database is locked" in str(error) for error in errors), errors
        # All four failed with the transaction that waited out the busy timeout, not each after a timeout of its own.
        assert (store.begun, store.batches) == (1, [])
        assert store.counts()["pending"] == 0
        assert write(received(0)) is True  # the lock gone: written
    finally:
        store.close()


def test_a_row_not_written_within_the_wait_is_told_the_store_is_too_slow(tmp_path):
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path, busy_timeout_s=5)
    group = GroupCommit(store._write_gathered)
    write = functools.partial(group.write, wait_s=0.3, what="the callback")
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            with WriteLock(path):
                leader = pool.submit(write, received(0))
                wait_until(lambda: group._writing.locked(), what="the first transaction")
                started = time.monotonic()
                with pytest.raises(StoreUnavailable, match="the callback not written within 0.3 s"):
                    write(received(1))
                assert time.monotonic() - started < 2
            # The lock gone before the leader's busy timeout: its row is written; the late one, withdrawn, is not.
            assert leader.result(timeout=10) is True
        assert [c.request_id for c in store.outbox("pending")] == ["r-0"]
        assert write(received(2)) is True and store.counts()["pending"] == 2
    finally:
        store.close()


def test_settlements_of_a_batch_are_each_recorded_or_refused_on_their_own(tmp_path):
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path, busy_timeout_s=0.3)
    try:
        store.put_registration(ACCOUNT, SERVICE, "http://127.0.0.1:9/listener", "legacy", "pw")
        assert store.add_callbacks([received(n) for n in range(3)]) == [True, True, True]
        first, second, third = store.claim_due("me", time.time(), 10, 3)
        now = time.time()
        batch = [
            Settlement(first.id, "me", now, url="http://127.0.0.1:9/listener", duration_s=0.01),
            Settlement(second.id, "someone else", now),  # a claim this worker lost
            Settlement(third.id, "me", now, "listener answered HTTP 500", now + 1, "http://127.0.0.1:9/listener", 0.02),
        ]
        with WriteLock(path):
            with pytest.raises(StoreUnavailable, match="database is locked"):
                store.settle(batch)
        assert store.counts() == {"pending": 0, "claimed": 3, "delivered": 0, "dead": 0}  # nothing of it recorded
        assert store.settle(batch) == [True, False, True]
        assert store.counts() == {"pending": 1, "claimed": 1, "delivered": 1, "dead": 0}
        def history(request_id):
            (stored,) = store.request_callbacks(request_id)
            return [(a.number, a.ok, a.outcome) for a in stored.attempts]

        assert history("r-0") == [(1, True, "acknowledged")]
        assert history("r-1") == []
        assert history("r-2") == [(1, False, "listener answered HTTP 500")]
    finally:
        store.close()


def claimed_entry(store):
    store.put_registration(ACCOUNT, SERVICE, "http://127.0.0.1:9/listener", "legacy", "pw")
    assert store.add_callbacks([received(0)]) == [True]
    (claimed,) = store.claim_due("me", time.time(), 10, 1)
    return claimed


def test_the_receivers_callbacks_and_the_workers_outcomes_queued_together_share_one_transaction(tmp_path):
    path = tmp_path / "store.sqlite3"
    store = CountingStore(path, busy_timeout_s=10)
    try:
        claimed = claimed_entry(store)
        receipts, outcomes = store.outbox_writer(5, "the callback"), store.outbox_writer(10, "the delivery outcome")
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            with WriteLock(path):
                first = pool.submit(receipts, received(1))
                wait_until(lambda: store._outbox_writes._writing.locked(), what="the first transaction")
                settled = pool.submit(outcomes, Settlement(claimed.id, "me", time.time()))
                duplicate = pool.submit(receipts, received(0))
                wait_until(lambda: queued(store._outbox_writes) == 3, what="the outcome and the callbacks queued together")
            results = [future.result(timeout=10) for future in (first, settled, duplicate)]
        assert results == [True, True, False]
        assert store.batches == [3]
        assert store.counts() == {"pending": 1, "claimed": 0, "delivered": 1, "dead": 0}
    finally:
        store.close()


def test_a_locked_store_fails_the_callbacks_and_the_outcomes_of_a_shared_transaction_and_writes_none(tmp_path):
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path, busy_timeout_s=0.3)
    try:
        claimed = claimed_entry(store)
        receipts, outcomes = store.outbox_writer(5, "the callback"), store.outbox_writer(10, "the delivery outcome")
        settlement = Settlement(claimed.id, "me", time.time())
        with WriteLock(path), concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(receipts, received(1)), pool.submit(outcomes, settlement)]
            errors = [future.exception(timeout=10) for future in futures]
        assert all(isinstance(error, StoreUnavailable) and "database is locked" in str(error) for error in errors), errors
        assert store.counts() == {"pending": 0, "claimed": 1, "delivered": 0, "dead": 0}
        assert outcomes(settlement) is True and receipts(received(1)) is True  # the lock gone: written
    finally:
        store.close()


def test_concurrent_callbacks_refused_503_while_the_store_is_locked_are_stored_once_when_sent_again(tmp_path):
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path, busy_timeout_s=0.3)
    receiver = CallbackReceiver(store, lambda: (THINGSPACE_USER, THINGSPACE_PASSWORD))
    bodies = [json.dumps(rest_callback(f"r-{n}", "990000862471854")) for n in range(6)]

    def post(body):
        answer = Client(receiver).post(CALLBACK_PATH, data=body, content_type="application/json")
        return answer.status_code, answer.headers.get("Retry-After"), answer.get_json()["message"]

    try:
        with WriteLock(path), concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
            refused = list(pool.map(post, bodies))
        assert all(status == 503 and retry_after == "5" for status, retry_after, _ in refused), refused
        assert store.counts()["pending"] == 0
        with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:  # ThingSpace sends them again, one twice
            again = list(pool.map(post, bodies + bodies[:1]))
        assert sorted(message for _, _, message in again) == ["already stored"] + ["stored"] * 6
        assert {status for status, _, _ in again} == {200}
        assert store.counts()["pending"] == 6
    finally:
        store.close()


def test_rows_written_together_each_get_their_result_and_lingering_ride_along_with_another_writers_transaction(tmp_path):
    store = CountingStore(tmp_path / "store.sqlite3")
    group = GroupCommit(store._write_gathered)
    try:
        assert group.write_all([received(0), received(1), received(0)], wait_s=10, what="the callbacks") == [True, True, False]
        assert (store.begun, store.batches) == (1, [3])
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            lingering = pool.submit(group.write_all, [received(2), received(3)], wait_s=10, what="the callbacks", linger_s=1.0)
            wait_until(lambda: queued(group) == 2, what="the lingering rows queued")
            assert group.write(received(4), wait_s=10, what="the callback") is True  # its transaction takes them along
            assert lingering.result(timeout=10) == [True, True]
        assert (store.begun, store.batches) == (2, [3, 3])
    finally:
        store.close()


# -- rows submitted by callers that cannot wait (the worker's event loop) ----------------------


class Told:
    """``on_done`` for submitted rows: what each was told, by request id, and how often."""

    def __init__(self):
        self.outcomes = {}
        self.calls = 0
        self._lock = threading.Lock()

    def of(self, row):
        def on_done(result, error):
            with self._lock:
                self.calls += 1
                self.outcomes.setdefault(row.request_id, []).append(error if error is not None else result)

        return on_done


def test_submitted_rows_are_written_by_the_writer_thread_with_what_threads_queued_in_one_transaction(tmp_path):
    path = tmp_path / "store.sqlite3"
    store = CountingStore(path, busy_timeout_s=10)
    group = GroupCommit(store._write_gathered)
    told = Told()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            with WriteLock(path):
                rows = [received(n) for n in range(3)] + [received(0)]  # r-0 twice
                for row in rows:
                    group.submit(row, 10, "the callback", told.of(row))
                wait_until(lambda: store.begun == 1, what="the writer thread's transaction")
                waiting = pool.submit(group.write, received(3), 10, "the callback")  # a thread's row, queued meanwhile
                wait_until(lambda: queued(group) == 5, what="every row queued")
                assert told.calls == 0  # nothing told before the commit
            assert waiting.result(timeout=10) is True
        wait_until(lambda: told.calls == 4, what="every submitted row told")
        assert told.outcomes == {"r-0": [True, False], "r-1": [True], "r-2": [True]}  # the repeat: a duplicate
        assert (store.begun, store.batches) == (1, [5])
        assert store.counts()["pending"] == 4
    finally:
        store.close()


def test_a_submitted_row_unwritten_past_its_wait_is_told_once_the_store_is_too_slow_and_never_written(tmp_path):
    path = tmp_path / "store.sqlite3"
    store = CountingStore(path, busy_timeout_s=30)  # the writer thread waits for the lock far longer than the row may
    group = GroupCommit(store._write_gathered)
    told = Told()
    try:
        with WriteLock(path):
            group.submit(received(0), 0.3, "the callback", told.of(received(0)))
            wait_until(lambda: store.begun == 1, what="the writer thread's transaction, waiting for the lock")
            group.expire()
            assert told.calls == 0  # not overdue yet
            time.sleep(0.3)
            group.expire()
            (error,) = told.outcomes["r-0"]
            assert isinstance(error, StoreUnavailable) and str(error) == (
                "the callback not written within 0.3 s: the store is too slow"
            )
        wait_until(lambda: store.batches == [0], what="the transaction, once the lock went")
        group.expire()
        assert told.calls == 1  # told once: not again by the transaction it was withdrawn from
        assert store.counts()["pending"] == 0
    finally:
        store.close()


def test_a_store_that_fails_tells_each_submitted_row_and_the_writer_thread_writes_on_once_it_is_back(tmp_path):
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path, busy_timeout_s=0.3)
    group = GroupCommit(store._write_gathered)
    told = Told()
    try:
        with WriteLock(path):
            for n in range(3):
                group.submit(received(n), 10, "the callback", told.of(received(n)))
            wait_until(lambda: told.calls == 3, what="the rows told the transaction failed")
        assert all(isinstance(error, StoreUnavailable) and "database is locked" in str(error)
                   for (error,) in told.outcomes.values()), told.outcomes
        group.submit(received(1), 10, "the callback", told.of(received(1)))  # sent again, once the store is back
        wait_until(lambda: told.calls == 4, what="the row sent again, told")
        assert told.outcomes["r-1"][1] is True and store.counts()["pending"] == 1
    finally:
        store.close()


def test_a_caller_whose_on_done_fails_keeps_no_other_from_being_told(tmp_path, caplog):
    store = SqliteStore(tmp_path / "store.sqlite3")
    group = GroupCommit(store._write_gathered)
    told = Told()

    def failing(result, error):
        raise RuntimeError("this caller's answer cannot be sent")

    try:
        with WriteLock(tmp_path / "store.sqlite3"):  # so that all three go in one transaction
            group.submit(received(0), 10, "the callback", told.of(received(0)))
            group.submit(received(1), 10, "the callback", failing)
            group.submit(received(2), 10, "the callback", told.of(received(2)))
        wait_until(lambda: told.calls == 2, what="the others told")
        assert told.outcomes == {"r-0": [True], "r-2": [True]}
        assert "the callback: its outcome could not be told" in caplog.text
        group.submit(received(3), 10, "the callback", told.of(received(3)))  # the writer thread goes on
        wait_until(lambda: told.calls == 3, what="a row submitted after it")
    finally:
        store.close()


def test_close_returns_once_what_was_submitted_is_written_and_stops_the_writer_thread(tmp_path):
    store = SqliteStore(tmp_path / "store.sqlite3")
    group = GroupCommit(store._write_gathered)
    told = Told()
    try:
        for n in range(300):  # more than one transaction's MAX_ROWS
            group.submit(received(n), 10, "the callback", told.of(received(n)))
        writer = group._writer
        group.close()
        assert told.calls == 300 and store.counts()["pending"] == 300
        assert not writer.is_alive()
    finally:
        store.close()
