"""The SQLite store on a real file: schema, settings, listeners, request memory, the outbox.

Several tests start processes (spawn: a fresh interpreter, as separate
gateway processes would be) that use the same file at the same time.
"""

import json
import multiprocessing
import os
import queue
import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.store import Delivery, OutboxEntry, Registration, SqliteStore

SPAWN = multiprocessing.get_context("spawn")
PROCESS_TIMEOUT_S = 60
NOW = 1_000.0
ACCOUNT, SERVICE, URL = "0000123456-00001", "GoToState", "http://listener.example/callbacks"


@pytest.fixture
def path(tmp_path):
    return tmp_path / "data" / "gateway.sqlite3"


@pytest.fixture
def store(path):
    store = SqliteStore(path)
    yield store
    store.close()


def register(store, account=ACCOUNT):
    store.put_registration(account, SERVICE, URL, "listener", "s3cret")


def add(store, key, now=NOW, account=ACCOUNT):
    return store.add_callback(key, account, SERVICE, f"request-{key}", json.dumps({"key": key}), now)


def ids(entries):
    return [entry.id for entry in entries]


def run_processes(target, args_per_process):
    """Run target(*args, start_barrier, results) in one spawned process per args; return what they put."""
    start, results = SPAWN.Barrier(len(args_per_process)), SPAWN.Queue()
    processes = [SPAWN.Process(target=target, args=(*args, start, results)) for args in args_per_process]
    for process in processes:
        process.start()
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    collected = []
    try:
        while len(collected) < len(processes):
            try:
                collected.append(results.get(timeout=0.2))
            except queue.Empty:
                failed = [process.exitcode for process in processes if process.exitcode not in (None, 0)]
                assert not failed, f"a process failed with exit code {failed}"
                assert time.monotonic() < deadline, "the processes did not finish in time"
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
    return collected


# Run in the spawned processes: module-level so that they can be found by name.


def _open_and_get_callback_credentials(path, start, results):
    start.wait(timeout=PROCESS_TIMEOUT_S)
    store = SqliteStore(path)
    results.put(store.callback_credentials())
    store.close()


def _claim_until_none_left(path, worker, start, results):
    store = SqliteStore(path)
    claimed = []
    start.wait(timeout=PROCESS_TIMEOUT_S)
    while batch := store.claim_due(worker, NOW, lease_s=600, limit=5):
        claimed += ids(batch)
        for delivery in batch:
            store.mark_delivered(delivery.id, worker, NOW)
        # As if delivering: SQLite's lock is not fair, and without a pause
        # one process could take every batch before the others wake up.
        time.sleep(0.005)
    results.put(claimed)
    store.close()


def _add_callbacks_then_die(path, count):
    store = SqliteStore(path)
    for n in range(count):
        add(store, f"key-{n}")
    os.kill(os.getpid(), signal.SIGKILL)


# -- the file ----------------------------------------------------------------------


def test_the_schema_is_created_on_first_open_in_wal_mode(path):
    SqliteStore(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"settings", "registrations", "requests", "outbox"} <= tables


def test_every_connection_syncs_in_full_so_an_acknowledged_callback_survives_power_loss(store):
    def synchronous():
        return store._connection().execute("PRAGMA synchronous").fetchone()[0]

    with ThreadPoolExecutor(1) as pool:
        in_another_thread = pool.submit(synchronous).result()
    assert synchronous() == in_another_thread == 2  # FULL


def test_data_survives_a_close_and_a_reopen(path):
    store = SqliteStore(path)
    register(store)
    add(store, "a")
    store.remember_request("request-a", {"state": "State"}, NOW)
    credentials = store.callback_credentials()
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        store.counts()

    reopened = SqliteStore(path)
    assert reopened.registration(ACCOUNT, SERVICE) is not None
    assert [entry.request_id for entry in reopened.outbox("pending")] == ["request-a"]
    assert reopened.kind_spellings("request-a") == {"state": "State"}
    assert reopened.callback_credentials() == credentials
    reopened.close()


def test_a_file_with_a_newer_schema_is_refused(path):
    SqliteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 2")
    with pytest.raises(RuntimeError, match="schema version 2"):
        SqliteStore(path)


def test_threads_use_the_store_at_once(store):
    register(store)
    with ThreadPoolExecutor(8) as pool:
        added = list(pool.map(lambda n: add(store, f"key-{n}"), range(200)))
    assert all(added)
    assert store.counts()["pending"] == 200


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


# -- callback credentials ------------------------------------------------------------


def test_callback_credentials_are_made_once_and_kept(store, tmp_path):
    username, password = store.callback_credentials()
    assert len(username) >= 16 and len(password) >= 32
    assert store.callback_credentials() == (username, password)
    other = SqliteStore(tmp_path / "other.sqlite3")
    assert other.callback_credentials() != (username, password)
    other.close()


def test_four_processes_opening_a_new_file_at_once_agree_on_the_callback_credentials(path):
    credentials = run_processes(_open_and_get_callback_credentials, [(path,)] * 4)
    assert len(credentials) == 4
    assert len(set(credentials)) == 1
    store = SqliteStore(path)
    assert store.callback_credentials() == credentials[0]
    store.close()


# -- registrations -----------------------------------------------------------------------


def test_registrations_are_put_replaced_listed_and_deleted(store):
    assert store.registration(ACCOUNT, SERVICE) is None
    store.put_registration("b", SERVICE, URL, "u", "p")
    store.put_registration("a", SERVICE, "http://old", "u", "p")
    store.put_registration("a", SERVICE, URL, "listener", "s3cret")
    store.put_registration("a", "Another", URL, None, None)

    assert store.registration("a", SERVICE) == Registration("a", SERVICE, URL, "listener", "s3cret")
    assert [(r.account, r.service) for r in store.registrations()] == [("a", "Another"), ("a", SERVICE), ("b", SERVICE)]
    assert [r.service for r in store.registrations("a")] == ["Another", SERVICE]

    assert store.delete_registration("a", SERVICE) is True
    assert store.delete_registration("a", SERVICE) is False
    assert store.registration("a", SERVICE) is None


def test_records_keep_the_password_out_of_their_repr():
    registration = Registration(ACCOUNT, SERVICE, URL, "listener", "s3cret")
    delivery = Delivery(1, ACCOUNT, SERVICE, "r", "{}", 0, URL, "listener", "s3cret", NOW)
    for record in (registration, delivery):
        assert "s3cret" not in repr(record) and "listener" in repr(record)


# -- request memory ------------------------------------------------------------------------


def test_requests_are_remembered_and_forgotten_by_age(store):
    store.remember_request("old", {"state": "State"}, NOW - 100)
    store.remember_request("new", {"state": "STATE"}, NOW)
    assert store.kind_spellings("new") == {"state": "STATE"}
    assert store.kind_spellings("unknown") == {}

    assert store.forget_requests_before(NOW - 50) == 1
    assert store.kind_spellings("old") == {}
    assert store.kind_spellings("new") == {"state": "STATE"}


# -- the outbox ------------------------------------------------------------------------------


def test_a_duplicate_callback_is_refused_whatever_the_state_of_the_first(store):
    register(store)
    assert add(store, "a") is True
    assert store.add_callback("a", ACCOUNT, SERVICE, "other", "other body", NOW) is False
    [delivery] = store.claim_due("w", NOW, lease_s=30, limit=10)
    assert delivery.body == json.dumps({"key": "a"})
    assert add(store, "a") is False
    store.mark_delivered(delivery.id, "w", NOW)
    assert add(store, "a") is False
    assert store.counts() == {"pending": 0, "claimed": 0, "delivered": 1, "dead": 0}


def test_a_claim_joins_the_registration_and_takes_due_entries_oldest_first_up_to_the_limit(store):
    register(store)
    add(store, "second", now=NOW - 5)
    add(store, "first", now=NOW - 10)
    add(store, "third", now=NOW - 1)
    add(store, "later", now=NOW + 10)  # not due yet

    first_two = store.claim_due("w", NOW, lease_s=30, limit=2)
    assert [d.request_id for d in first_two] == ["request-first", "request-second"]
    assert first_two[0] == Delivery(
        first_two[0].id, ACCOUNT, SERVICE, "request-first", json.dumps({"key": "first"}), 0, URL, "listener", "s3cret", NOW - 10
    )
    assert [d.request_id for d in store.claim_due("w", NOW, lease_s=30, limit=10)] == ["request-third"]
    assert store.claim_due("w", NOW, lease_s=30, limit=10) == []
    assert [d.request_id for d in store.claim_due("w", NOW + 10, lease_s=30, limit=10)] == ["request-later"]


def test_entries_without_a_listener_wait_and_are_claimed_once_one_registers(store):
    add(store, "a")
    assert store.claim_due("w", NOW, lease_s=30, limit=10) == []
    assert store.next_due_at() is None
    register(store)
    assert store.next_due_at() == NOW
    assert [d.request_id for d in store.claim_due("w", NOW, lease_s=30, limit=10)] == ["request-a"]


def test_an_expired_lease_passes_the_entry_to_another_worker(store):
    register(store)
    add(store, "a")
    [first] = store.claim_due("dies", NOW, lease_s=10, limit=10)
    assert store.claim_due("takes-over", NOW + 5, lease_s=10, limit=10) == []
    [second] = store.claim_due("takes-over", NOW + 11, lease_s=10, limit=10)
    assert second.id == first.id

    assert store.mark_delivered(first.id, "dies", NOW + 12) is False
    assert store.mark_failed(first.id, "dies", NOW + 12, "late", retry_at=NOW + 60) is False
    assert store.mark_delivered(second.id, "takes-over", NOW + 12) is True
    assert store.counts()["delivered"] == 1


def test_a_failed_attempt_is_retried_at_its_time_then_given_up(store):
    register(store)
    add(store, "a")
    [delivery] = store.claim_due("w", NOW, lease_s=30, limit=10)
    assert store.mark_failed(delivery.id, "w", NOW + 1, "x" * 600, retry_at=NOW + 60) is True
    [entry] = store.outbox("pending")
    assert (entry.state, entry.attempts, entry.next_attempt_at) == ("pending", 1, NOW + 60)
    assert entry.last_error == "x" * 500
    assert store.claim_due("w", NOW + 59, lease_s=30, limit=10) == []

    [delivery] = store.claim_due("w", NOW + 60, lease_s=30, limit=10)
    assert delivery.attempts == 1
    assert store.mark_failed(delivery.id, "w", NOW + 61, "refused", retry_at=None) is True
    assert store.mark_failed(delivery.id, "w", NOW + 61, "refused", retry_at=None) is False
    assert store.outbox("pending") == []
    [dead] = store.outbox("dead")
    assert (dead.state, dead.attempts, dead.last_error) == ("dead", 2, "refused")
    assert store.claim_due("w", NOW + 1000, lease_s=30, limit=10) == []
    assert store.next_due_at() is None


def test_retry_and_retry_all_revive_dead_entries_with_fresh_attempts(store):
    register(store)
    for key in ("a", "b", "c"):
        add(store, key)
    for delivery in store.claim_due("w", NOW, lease_s=30, limit=10):
        store.mark_failed(delivery.id, "w", NOW, "refused", retry_at=None)
    a, b, c = ids(store.outbox("dead"))

    assert store.retry(a, NOW + 100) is True
    assert store.retry(a, NOW + 100) is False  # no longer dead
    [revived] = store.outbox("pending")
    assert (revived.id, revived.attempts, revived.next_attempt_at) == (a, 0, NOW + 100)

    assert store.retry_all(NOW + 200) == 2
    assert ids(store.outbox("pending")) == [a, b, c]
    assert store.outbox("dead") == []
    assert ids(store.claim_due("w", NOW + 200, lease_s=30, limit=10)) == [a, b, c]


def test_entries_that_waited_too_long_for_a_listener_expire(store):
    register(store)
    add(store, "listened", now=NOW - 100)
    add(store, "old", now=NOW - 100, account="unregistered")
    add(store, "young", now=NOW - 10, account="unregistered")

    assert store.expire_waiting(NOW, max_age_s=60) == 1
    [dead] = store.outbox("dead")
    assert dead.request_id == "request-old"
    assert dead.last_error == "no listener registered within 60 s"
    assert [e.request_id for e in store.outbox("pending")] == ["request-listened", "request-young"]


def test_the_pending_listing_shows_claimed_entries_as_they_are(store):
    register(store)
    add(store, "a", now=NOW - 1)
    add(store, "b")
    store.claim_due("w", NOW, lease_s=30, limit=1)
    assert [(e.request_id, e.state) for e in store.outbox("pending")] == [("request-a", "claimed"), ("request-b", "pending")]
    assert all(isinstance(e, OutboxEntry) for e in store.outbox("pending"))
    assert store.counts() == {"pending": 1, "claimed": 1, "delivered": 0, "dead": 0}
    with pytest.raises(ValueError):
        store.outbox("delivered")


def test_next_due_at_is_the_earliest_attempt_or_lease_end_of_a_listened_entry(store):
    assert store.next_due_at() is None
    register(store)
    add(store, "unlistened", now=NOW - 50, account="unregistered")
    add(store, "later", now=NOW + 20)
    add(store, "sooner", now=NOW + 10)
    assert store.next_due_at() == NOW + 10

    store.claim_due("w", NOW + 10, lease_s=5, limit=1)  # a worker that may die holding it
    assert store.next_due_at() == NOW + 15


def test_delivered_entries_are_kept_until_purged_and_then_their_key_is_free(store):
    register(store)
    add(store, "old")
    add(store, "new")
    old, new = store.claim_due("w", NOW, lease_s=30, limit=10)
    store.mark_delivered(old.id, "w", NOW)
    store.mark_delivered(new.id, "w", NOW + 100)

    assert store.purge_delivered_before(NOW + 50) == 1
    assert store.counts()["delivered"] == 1
    assert add(store, "old") is True
    assert add(store, "new") is False


def test_processes_claiming_at_once_never_get_the_same_entry(store, path):
    register(store)
    for n in range(500):
        add(store, f"key-{n}")
    expected = ids(store.outbox("pending"))

    per_worker = run_processes(_claim_until_none_left, [(path, f"worker-{n}") for n in range(4)])
    claimed = [entry_id for ids_of_one in per_worker for entry_id in ids_of_one]
    assert len(claimed) == len(set(claimed)), "an entry was claimed twice"
    assert sorted(claimed) == sorted(expected)
    assert sum(1 for ids_of_one in per_worker if ids_of_one) >= 2, "no two processes claimed at the same time"
    assert store.counts()["delivered"] == 500


def test_an_acknowledged_callback_survives_the_process_being_killed(path):
    process = SPAWN.Process(target=_add_callbacks_then_die, args=(path, 3))
    process.start()
    process.join(timeout=PROCESS_TIMEOUT_S)
    assert process.exitcode == -signal.SIGKILL

    store = SqliteStore(path)
    assert [e.request_id for e in store.outbox("pending")] == ["request-key-0", "request-key-1", "request-key-2"]
    store.close()
