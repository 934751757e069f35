"""What only the SQLite store does: the file, its PRAGMAs, its connections (one writer, a reader per thread).

Everything both backends do is in test_store_contract.py.
"""

import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.store import SqliteStore
from gateway.store.records import ReceivedCallback, Settlement


@pytest.fixture
def path(tmp_path):
    return tmp_path / "data" / "gateway.sqlite3"


@pytest.fixture
def store(path):
    store = SqliteStore(path)
    yield store
    store.close()


def test_the_schema_is_created_on_first_open_in_wal_mode(path):
    SqliteStore(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(SqliteStore.MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"settings", "registrations", "requests", "outbox", "attempts"} <= tables


def synchronous_of_writes(store, flushed=True):
    """PRAGMA synchronous of the connection a write of the store runs on."""
    with store._write(flushed=flushed) as db:
        return db.execute("PRAGMA synchronous").fetchone()[0]


def test_every_flushed_write_syncs_in_full_from_any_thread_so_an_acknowledged_callback_survives_power_loss(store):
    store.add_callback("k", "a", "StateService", "r", "{}", 1000.0)
    with ThreadPoolExecutor(1) as pool:
        in_another_thread = pool.submit(synchronous_of_writes, store).result()
    assert synchronous_of_writes(store) == in_another_thread == 2  # FULL
    assert store._connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # and a reader's, were it to write


def test_writes_from_every_thread_share_one_writer_so_its_cache_stays_warm(store):
    def writer():
        with store._write() as db:
            return db

    with ThreadPoolExecutor(2) as pool:
        writers = {pool.submit(writer).result() for _ in range(4)}
    assert writers == {writer()}


def test_a_file_of_schema_3_gets_the_listeners_index_in_place_of_the_oldest_first_one(path):
    class Schema3Store(SqliteStore):
        MIGRATIONS = SqliteStore.MIGRATIONS[:3]
        LISTENER_INDEX = ""  # outbox_listener_due came with step 4

    Schema3Store(path).close()
    SqliteStore(path).close()
    with sqlite3.connect(path) as db:
        indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox'")}
    assert {"outbox_listener_due", "outbox_listener_next_due"} <= indexes and "outbox_due" not in indexes


def test_a_file_with_a_newer_schema_is_refused(path):
    SqliteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(SqliteStore.MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match=f"schema version {len(SqliteStore.MIGRATIONS) + 1}"):
        SqliteStore(path)


def test_connections_of_finished_threads_are_closed_and_close_closes_them_all(store, path):
    def open_handles():
        fds = os.listdir("/proc/self/fd")
        return sum(1 for fd in fds if os.path.realpath(f"/proc/self/fd/{fd}") == str(path.resolve()))

    before = open_handles()
    for _ in range(20):
        thread = threading.Thread(target=store.counts)
        thread.start()
        thread.join()
    assert open_handles() <= before + 1  # the last thread's, closed by the next one to connect
    store.close()
    assert open_handles() == 0


def test_the_unflushed_request_memory_leaves_every_other_commit_flushed(store, path):
    store.remember_request("r", {}, 1000.0, account="a", devices=1)
    assert synchronous_of_writes(store) == 2  # FULL, for the outbox's commits
    assert synchronous_of_writes(store, flushed=False) == 1  # NORMAL: not waiting for the disk
    store.remember_request("spelled", {"imei": "Imei"}, 1000.0)
    assert synchronous_of_writes(store) == 2
    with sqlite3.connect(path) as db:
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON requests BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
    with pytest.raises(sqlite3.DatabaseError, match="disk trouble"):
        store.remember_request("s", {}, 1000.0)
    assert synchronous_of_writes(store) == 2
    assert store.forwarded_request("r").devices == 1


def test_a_claim_costs_the_same_behind_a_backlog_of_thousands_as_behind_a_few(store):
    store.put_registration("a", "StateService", "http://listener.example/", None, None)
    received = [ReceivedCallback(f"k{n}", "a", "StateService", f"r{n}", "{}", 1000.0 + n) for n in range(2_000)]

    def steps_of_a_claim(backlog):
        store.add_callbacks(received[:backlog])
        claimed, steps = steps_of(writer_connection(store), lambda: store.claim_due("w", 10_000.0, 10, 10))
        assert len(claimed) == 10 and [d.received_at for d in claimed] == sorted(d.received_at for d in claimed)
        store.settle([Settlement(delivery.id, "w", 10_000.0) for delivery in claimed])
        return steps

    few, many = steps_of_a_claim(20), steps_of_a_claim(2_000)

    # Walking the due entries oldest first (outbox_listener_due), not sorting them all: 100x the backlog, not 100x the work.
    assert many < 3 * few, (few, many)


def test_callbacks_waiting_for_a_listener_not_registered_cost_the_claims_and_the_idle_look_nothing(store):
    store.put_registration("a", "StateService", "http://listener.example/", None, None)
    unlistened = [ReceivedCallback(f"k{n}", "nobody", "StateService", f"r{n}", "{}", 1000.0 + n) for n in range(2_000)]

    def steps_of_a_claim_and_of_next_due_at(waiting):
        store.add_callbacks(unlistened[:waiting])
        store.add_callback(f"listened-{waiting}", "a", "StateService", "r", "{}", 5_000.0)
        [claimed], claim_steps = steps_of(writer_connection(store), lambda: store.claim_due("w", 10_000.0, 10, 10))
        next_due, next_due_steps = steps_of(store._connection(), store.next_due_at)  # this thread's reader
        assert next_due == 10_000.0 + 10  # the lease of the one claimed
        store.settle([Settlement(claimed.id, "w", 10_000.0)])
        return claim_steps, next_due_steps

    (claim_few, next_due_few), (claim_many, next_due_many) = (
        steps_of_a_claim_and_of_next_due_at(20),
        steps_of_a_claim_and_of_next_due_at(2_000),
    )

    # Each listener's entries walked on their own (outbox_listener_due), not every entry not
    # delivered: walking the 1,980 more would take several VM steps each, here 500 in all.
    assert claim_many < claim_few + 50, (claim_few, claim_many)
    assert next_due_many < next_due_few + 50, (next_due_few, next_due_many)


def test_the_idle_look_reads_the_first_entry_of_each_listener_not_each_one_waiting_for_a_retry(store):
    store.put_registration("a", "StateService", "http://listener.example/", None, None)
    received = [ReceivedCallback(f"k{n}", "a", "StateService", f"r{n}", "{}", 1000.0 + n) for n in range(2_000)]

    def steps_of_next_due_at(waiting):
        store.add_callbacks(received[:waiting])
        del received[:waiting]
        while claimed := store.claim_due("w", 5_000.0, 10, 500):  # each fails, to be retried in an hour
            store.settle([Settlement(delivery.id, "w", 5_000.0, "listener answered HTTP 503", 8_600.0) for delivery in claimed])
        store.next_due_at()  # its statement prepared
        next_due, steps = steps_of(store._connection(), store.next_due_at)
        assert next_due == 8_600.0
        return steps

    few, many = steps_of_next_due_at(20), steps_of_next_due_at(1_980)

    assert many < few + 50, (few, many)


def writer_connection(store):
    with store._write(flushed=False) as connection:
        return connection


def steps_of(connection, call):
    """What ``call`` returns, and SQLite's own count of the work it did on ``connection`` (in 10s of VM steps)."""
    steps = []
    connection.set_progress_handler(lambda: steps.append(1), 10)
    try:
        return call(), len(steps)
    finally:
        connection.set_progress_handler(None, 0)


def test_a_writer_gets_the_write_lock_as_soon_as_another_process_lets_it_go(store, path):
    store.put_registration("a", "StateService", "http://listener.example/", None, None)  # the file, ready
    waits = []
    # The best of three: a loaded machine may be late to run the writer once, while
    # SQLite's own busy handler is late the same ~90 ms every time (its sleeps are fixed).
    for attempt in range(3):
        other_process = sqlite3.connect(path, isolation_level=None)
        other_process.execute("BEGIN IMMEDIATE")
        stored_at = []
        writer = threading.Thread(
            target=lambda: stored_at.append(
                (store.add_callback(f"k{attempt}", "a", "StateService", "r", "{}", 1000.0), time.monotonic())
            )
        )
        writer.start()
        # The other writer's transaction lasts a quarter of a second: by then SQLite's own
        # busy handler sleeps 100 ms between tries, and the lock would sit free for most of one.
        time.sleep(0.24)
        released_at = time.monotonic()
        other_process.execute("ROLLBACK")
        other_process.close()
        writer.join(timeout=10)
        [(stored, at)] = stored_at
        assert stored
        waits.append(at - released_at)
    assert min(waits) < 0.04, waits
