"""What every store backend does the same: each test runs on SQLite and on PostgreSQL.

Settings, listeners, request memory and the outbox, through the one
interface the gateway uses; stores are opened with ``open_store`` from
``[store]`` settings, as the gateway opens them. Several tests start processes
(spawn: a fresh interpreter, as separate gateway processes would be) that use
the same store at the same time.
"""

import itertools
import hashlib
import json
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway import config
from gateway.exceptions import ConfigError
from gateway.logs import iso_utc
from gateway.store import (
    Attempt,
    Delivery,
    ForwardedRequest,
    OutboxEntry,
    PostgresStore,
    Registration,
    SqliteStore,
    StoreClosed,
    open_store,
)
from gateway.store.records import ReceivedCallback, Settlement
from gateway.store.sql import HAND_OFF_OVERTAKES_S

SPAWN = multiprocessing.get_context("spawn")
PROCESS_TIMEOUT_S = 60
NOW = 1_000.0
ACCOUNT, SERVICE, URL = "0000123456-00001", "GoToState", "http://listener.example/callbacks"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.process)])
def new_settings(request, tmp_path):
    """Makes ``[store]`` settings naming a new, empty store of the backend under test."""
    if request.param == "sqlite":
        numbers = itertools.count()
        return lambda: config.Store(path=str(tmp_path / f"store-{next(numbers)}" / "gateway.sqlite3"), url=None, retain_s=604800)
    server = request.getfixturevalue("postgres_server")
    return lambda: config.Store(path="unused", url=server.create_database(), retain_s=604800)


@pytest.fixture
def settings(new_settings):
    return new_settings()


@pytest.fixture
def store(settings):
    store = open_store(settings)
    yield store
    store.close()


def register(store, account=ACCOUNT):
    store.put_registration(account, SERVICE, URL, "listener", "s3cret")


def add(store, key, now=NOW, account=ACCOUNT):
    return store.add_callback(key, account, SERVICE, f"request-{key}", json.dumps({"key": key}), now)


def remembered_spellings(store, request_id):
    """The kind spellings remembered of ``request_id``; none when it is not remembered."""
    forwarded = store.forwarded_request(request_id)
    return forwarded.kind_spellings if forwarded else {}


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


def _open_and_get_callback_credentials(settings, start, results):
    start.wait(timeout=PROCESS_TIMEOUT_S)
    store = open_store(settings)
    results.put(store.callback_credentials())
    store.close()


def _claim_until_none_left(settings, worker, start, results):
    store = open_store(settings)
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


def _add_callbacks_then_die(settings, count):
    store = open_store(settings)
    for n in range(count):
        add(store, f"key-{n}")
    os.kill(os.getpid(), signal.SIGKILL)


# -- choosing the backend -------------------------------------------------------------


def test_the_store_url_selects_postgresql_and_an_empty_one_sqlite(tmp_path, postgres_url):
    path = str(tmp_path / "gateway.sqlite3")
    sqlite = open_store(config.load(environ={"M2MGW_STORE_PATH": path}).store)
    postgres = open_store(config.load(environ={"M2MGW_STORE_PATH": path, "M2MGW_STORE_URL": postgres_url}).store)
    assert isinstance(sqlite, SqliteStore) and isinstance(postgres, PostgresStore)
    sqlite.close()
    postgres.close()


def test_a_store_url_that_is_not_postgresql_stops_start_up_without_showing_its_password():
    with pytest.raises(ConfigError, match=r"\[store\] url: must be a postgresql:// URL") as raised:
        config.load(environ={"M2MGW_STORE_URL": "mysql://gateway:hunter2@db.example.com/m2m"})
    assert "hunter2" not in str(raised.value)


def test_the_store_settings_keep_the_url_and_its_password_out_of_their_repr():
    settings = config.load(environ={"M2MGW_STORE_URL": "postgresql://gateway:hunter2@db.example.com/m2m"})
    assert settings.store.url == "postgresql://gateway:hunter2@db.example.com/m2m"
    assert "hunter2" not in repr(settings) and "hunter2" not in repr(settings.store)


def test_records_keep_the_password_out_of_their_repr():
    registration = Registration(ACCOUNT, SERVICE, URL, "listener", "s3cret")
    delivery = Delivery(1, ACCOUNT, SERVICE, "r", "{}", 0, URL, "listener", "s3cret", NOW)
    for record in (registration, delivery):
        assert "s3cret" not in repr(record) and "listener" in repr(record)


# -- the store as a whole ----------------------------------------------------------------


def test_data_survives_a_close_and_a_reopen(settings):
    store = open_store(settings)
    register(store)
    add(store, "a")
    store.remember_request("request-a", {"state": "State"}, NOW)
    credentials = store.callback_credentials()
    store.close()
    with pytest.raises(StoreClosed):
        store.counts()

    reopened = open_store(settings)
    assert reopened.registration(ACCOUNT, SERVICE) is not None
    assert [entry.request_id for entry in reopened.outbox("pending")] == ["request-a"]
    assert remembered_spellings(reopened, "request-a") == {"state": "State"}
    assert reopened.callback_credentials() == credentials
    reopened.close()


def test_threads_use_the_store_at_once(store):
    register(store)
    with ThreadPoolExecutor(8) as pool:
        added = list(pool.map(lambda n: add(store, f"key-{n}"), range(200)))
    assert all(added)
    assert store.counts()["pending"] == 200


# -- callback credentials ------------------------------------------------------------


def test_callback_credentials_are_made_once_and_kept(store, new_settings):
    username, password = store.callback_credentials()
    assert len(username) >= 16 and len(password) >= 32
    assert store.callback_credentials() == (username, password)
    other = open_store(new_settings())
    assert other.callback_credentials() != (username, password)
    other.close()


@pytest.mark.process
def test_four_processes_opening_a_new_store_at_once_agree_on_the_callback_credentials(settings):
    # Each also creates the schema if it finds none: exactly one may.
    credentials = run_processes(_open_and_get_callback_credentials, [(settings,)] * 4)
    assert len(credentials) == 4
    assert len(set(credentials)) == 1
    store = open_store(settings)
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
    assert store.registrations("nobody") == []

    assert store.delete_registration("a", SERVICE) is True
    assert store.delete_registration("a", SERVICE) is False
    assert store.registration("a", SERVICE) is None


# -- request memory ------------------------------------------------------------------------


def test_a_forwarded_request_is_remembered_with_its_account_and_devices_until_forgotten(store):
    store.remember_request("by-list", {}, NOW, account=ACCOUNT, devices=3)
    store.remember_request("by-filter", {"imei": "Imei"}, NOW + 1)
    assert store.forwarded_request("by-list") == ForwardedRequest("by-list", NOW, ACCOUNT, 3, {})
    assert store.forwarded_request("by-filter") == ForwardedRequest("by-filter", NOW + 1, None, None, {"imei": "Imei"})
    assert remembered_spellings(store, "by-list") == {}
    assert store.forwarded_request("unknown") is None

    assert store.forget_requests_before(NOW + 1) == 1
    assert store.forwarded_request("by-list") is None


def test_requests_are_remembered_and_forgotten_by_age(store):
    store.remember_request("old", {"state": "State"}, NOW - 100)
    store.remember_request("new", {"state": "STATE"}, NOW)
    assert remembered_spellings(store, "new") == {"state": "STATE"}
    assert remembered_spellings(store, "unknown") == {}

    assert store.forget_requests_before(NOW - 50) == 1
    assert remembered_spellings(store, "old") == {}
    assert remembered_spellings(store, "new") == {"state": "STATE"}


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


def test_a_claim_brings_the_kind_spellings_remembered_of_each_entrys_request(store):
    register(store)
    store.remember_request("request-spelled", {"imei": "Imei"}, NOW)
    store.remember_request("request-plain", {}, NOW)
    for key in ("spelled", "plain", "unknown"):
        add(store, key)

    claimed = store.claim_due("w", NOW, lease_s=30, limit=10)

    # As stored: the delivery parses it, so that text that does not parse fails that entry alone.
    assert {d.request_id: d.kind_spellings for d in claimed} == {
        "request-spelled": '{"imei": "Imei"}',
        "request-plain": "{}",
        "request-unknown": None,
    }


def test_entries_without_a_listener_wait_and_are_claimed_once_one_registers(store):
    add(store, "a")
    assert store.claim_due("w", NOW, lease_s=30, limit=10) == []
    assert store.next_due_at() is None
    register(store)
    assert store.next_due_at() == NOW
    assert [d.request_id for d in store.claim_due("w", NOW, lease_s=30, limit=10)] == ["request-a"]


def test_entries_waiting_for_a_listener_neither_hold_back_nor_go_with_the_others_until_it_registers(store):
    register(store)
    add(store, "unlistened-1", now=NOW - 30, account="unregistered")
    add(store, "listened-1", now=NOW - 25)
    add(store, "unlistened-2", now=NOW - 20, account="unregistered")
    add(store, "listened-2", now=NOW - 10)
    add(store, "listened-3", now=NOW - 5)

    assert [d.request_id for d in store.claim_due("w", NOW, lease_s=30, limit=2)] == ["request-listened-1", "request-listened-2"]
    register(store, account="unregistered")
    # Oldest first across the listeners.
    assert [d.request_id for d in store.claim_due("w", NOW, lease_s=30, limit=10)] == [
        "request-unlistened-1",
        "request-unlistened-2",
        "request-listened-3",
    ]


def test_a_claim_takes_the_oldest_due_entries_of_all_listeners_together_up_to_the_limit(store):
    accounts = [f"000000000{n}-00001" for n in range(3)]
    for account in accounts:
        register(store, account=account)
    # Each listener with more due entries than the limit, received in turns.
    for n in range(12):
        add(store, f"{n}", now=NOW - 100 + n, account=accounts[n % 3])

    first = store.claim_due("w", NOW, lease_s=30, limit=4)
    assert [d.request_id for d in first] == [f"request-{n}" for n in range(4)]
    assert [d.account for d in first] == [accounts[n % 3] for n in range(4)]
    assert [d.request_id for d in store.claim_due("w", NOW, lease_s=30, limit=10)] == [f"request-{n}" for n in range(4, 12)]


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


def test_every_attempt_is_kept_in_order_with_its_outcome_and_duration_and_no_credentials(store):
    store.put_registration(ACCOUNT, SERVICE, "https://user:s3cret@listener.example:8443/cb?token=t0ken#x", "u", "p")
    add(store, "a")
    [delivery] = store.claim_due("w", NOW, lease_s=30, limit=10)
    store.mark_failed(delivery.id, "w", NOW + 2, "listener answered HTTP 500", NOW + 5, url=delivery.url, duration_s=0.25)
    [delivery] = store.claim_due("w", NOW + 5, lease_s=30, limit=10)
    store.mark_failed(delivery.id, "w", NOW + 6, "listener unreachable (ConnectTimeout)", NOW + 10, url=delivery.url, duration_s=1)
    [delivery] = store.claim_due("w", NOW + 10, lease_s=30, limit=10)
    store.mark_delivered(delivery.id, "w", NOW + 10.5, url=delivery.url, duration_s=0.5)

    [stored] = store.request_callbacks("request-a")
    url = "https://listener.example:8443/cb"
    assert stored.attempts == (
        Attempt(delivery.id, 1, NOW + 1.75, url, "listener answered HTTP 500", False, 0.25),
        Attempt(delivery.id, 2, NOW + 5, url, "listener unreachable (ConnectTimeout)", False, 1),
        Attempt(delivery.id, 3, NOW + 10, url, "acknowledged", True, 0.5),
    )
    assert (stored.state, stored.body, stored.listener_registered) == ("delivered", json.dumps({"key": "a"}), True)


def test_an_attempt_without_a_post_is_kept_too(store):
    register(store)
    add(store, "a")
    [delivery] = store.claim_due("w", NOW, lease_s=30, limit=10)
    store.mark_failed(delivery.id, "w", NOW, "the stored callback cannot be turned into an envelope", retry_at=None)
    [stored] = store.request_callbacks("request-a")
    assert stored.attempts == (
        Attempt(delivery.id, 1, NOW, None, "the stored callback cannot be turned into an envelope", False, None),
    )


def received(key, now=NOW, account=ACCOUNT, claimed_by="w", lease_s=10):
    """A callback as the receiver hands it to the store, claimed for ``claimed_by`` if its listener can take it."""
    return ReceivedCallback(key, account, SERVICE, f"request-{key}", json.dumps({"key": key}), now, claimed_by, now + lease_s)


def test_a_callback_received_claimed_is_stored_claimed_and_comes_back_as_its_delivery(store):
    register(store)
    store.remember_request("request-spelled", {"imei": "Imei"}, NOW)

    [handed] = store.add_callbacks([received("spelled")])

    assert handed == Delivery(
        handed.id, ACCOUNT, SERVICE, "request-spelled", json.dumps({"key": "spelled"}), 0, URL, "listener", "s3cret", NOW,
        '{"imei": "Imei"}',
    )
    assert store.counts() == {"pending": 0, "claimed": 1, "delivered": 0, "dead": 0}
    # Claimed as a claim_due claims: no one else takes it while its lease holds, anyone after.
    assert store.claim_due("other", NOW + 9, lease_s=10, limit=10) == []
    assert store.renew_claims("w", [handed.id], NOW + 20) is None
    assert store.claim_due("other", NOW + 11, lease_s=10, limit=10) == []
    assert store.mark_delivered(handed.id, "w", NOW + 12, url=URL, duration_s=0.1) is True
    assert [attempt.number for attempt in store.request_callbacks("request-spelled")[0].attempts] == [1]


def test_a_callback_received_claimed_is_stored_unclaimed_when_its_listener_is_not_registered_or_has_older_entries_due(store):
    [unregistered] = store.add_callbacks([received("unregistered")])
    assert unregistered is True
    register(store)
    # The older entry due now goes first: the new one waits its turn, unclaimed.
    assert store.add_callbacks([received("behind", now=NOW + 1)]) == [True]
    assert [d.request_id for d in store.claim_due("w", NOW + 1, lease_s=10, limit=1)] == ["request-unregistered"]
    # An entry waiting for a later retry, or claimed by a live worker, is not due: it holds nothing back.
    [behind] = store.claim_due("w", NOW + 1, lease_s=10, limit=1)
    store.mark_failed(behind.id, "w", NOW + 2, "listener answered HTTP 503", retry_at=NOW + 60)
    [after_both] = store.add_callbacks([received("after", now=NOW + 3)])
    assert isinstance(after_both, Delivery) and after_both.request_id == "request-after"
    # Not claimed when the receiver did not ask; a duplicate is one however it is received.
    assert store.add_callbacks([received("plain", now=NOW + 4, claimed_by=None), received("after", now=NOW + 4)]) == [True, False]
    assert store.counts() == {"pending": 2, "claimed": 2, "delivered": 0, "dead": 0}  # behind and plain; unregistered and after


def test_a_callback_received_claimed_goes_ahead_only_of_entries_that_came_due_a_moment_ago(store):
    register(store)
    add(store, "pending")  # due at NOW; its claim is on its way
    [ahead] = store.add_callbacks([received("ahead", now=NOW + HAND_OFF_OVERTAKES_S / 2)])
    assert isinstance(ahead, Delivery)
    assert store.add_callbacks([received("behind", now=NOW + HAND_OFF_OVERTAKES_S * 2)]) == [True]
    assert [d.request_id for d in store.claim_due("w", NOW + 1, lease_s=10, limit=10)] == ["request-pending", "request-behind"]


def test_callbacks_received_claimed_together_are_each_claimed_in_one_transaction(store):
    register(store)
    results = store.write_outbox([received("a"), received("b", account="unregistered"), received("c")])
    assert [type(result) for result in results] == [Delivery, bool, Delivery]
    assert [result.request_id for result in results if result is not True] == ["request-a", "request-c"]
    assert store.claim_due("w", NOW, lease_s=10, limit=10) == []


def test_the_attempt_of_a_worker_that_lost_its_claim_is_not_recorded(store):
    register(store)
    add(store, "a")
    [first] = store.claim_due("dies", NOW, lease_s=10, limit=10)
    [second] = store.claim_due("takes-over", NOW + 11, lease_s=10, limit=10)
    assert store.mark_delivered(first.id, "dies", NOW + 12, url=URL, duration_s=0.1) is False
    assert store.mark_failed(first.id, "dies", NOW + 12, "late", NOW + 60, url=URL, duration_s=0.1) is False
    assert store.request_callbacks("request-a")[0].attempts == ()
    assert store.mark_delivered(second.id, "takes-over", NOW + 12, url=URL, duration_s=0.1) is True
    assert [attempt.number for attempt in store.request_callbacks("request-a")[0].attempts] == [1]


def test_claims_given_back_are_due_at_once_for_any_worker_and_only_what_their_worker_still_holds_goes(store):
    register(store)
    [handed] = store.add_callbacks([received("handed")])  # claimed by w until NOW + 10
    add(store, "lapsed", now=NOW + 1)
    [lapsed] = store.claim_due("w", NOW + 1, lease_s=1, limit=10)
    [taken_over] = store.claim_due("other", NOW + 3, lease_s=10, limit=10)
    assert taken_over.id == lapsed.id
    add(store, "sent", now=NOW + 4)
    add(store, "unsent", now=NOW + 4)
    sent, unsent = store.claim_due("w", NOW + 4, lease_s=10, limit=10)
    assert store.mark_delivered(sent.id, "w", NOW + 5) is True

    assert store.release_claims("w", [unsent.id, handed.id, lapsed.id, sent.id], NOW + 6) == 2

    assert store.counts() == {"pending": 2, "claimed": 1, "delivered": 1, "dead": 0}
    assert [(entry.request_id, entry.state, entry.attempts, entry.next_attempt_at) for entry in store.outbox("pending")] == [
        ("request-handed", "pending", 0, NOW + 6),
        ("request-lapsed", "claimed", 0, NOW + 1),
        ("request-unsent", "pending", 0, NOW + 6),
    ]
    assert store.request_callbacks("request-unsent")[0].attempts == ()  # giving back is no attempt
    # Due at once, long before their leases would have lapsed; the one taken over is still the other's.
    assert [d.request_id for d in store.claim_due("next", NOW + 6, lease_s=10, limit=10)] == ["request-handed", "request-unsent"]
    assert store.mark_delivered(taken_over.id, "other", NOW + 7) is True


def test_callbacks_received_and_outcomes_settled_are_written_in_one_transaction_each_with_its_result(store):
    register(store)
    add(store, "a")
    add(store, "b")
    lost, mine = store.claim_due("w", NOW, lease_s=10, limit=10)
    # Both leases ran out; the oldest entry was taken over, the other is still "w"'s to settle.
    assert store.claim_due("takes-over", NOW + 11, lease_s=10, limit=1)[0].id == lost.id
    rows = [
        Settlement(mine.id, "w", NOW + 12, url=URL, duration_s=0.1),
        ReceivedCallback("c", ACCOUNT, SERVICE, "request-c", "{}", NOW + 12),
        Settlement(lost.id, "w", NOW + 12, url=URL, duration_s=0.1),
        ReceivedCallback("a", ACCOUNT, SERVICE, "request-a", "{}", NOW + 12),  # stored before: a duplicate
    ]
    assert store.write_outbox(rows) == [True, True, False, False]
    assert store.counts() == {"pending": 1, "claimed": 1, "delivered": 1, "dead": 0}
    assert [(a.number, a.ok) for a in store.request_callbacks(mine.request_id)[0].attempts] == [(1, True)]
    assert store.request_callbacks(lost.request_id)[0].attempts == ()
    with pytest.raises(TypeError):
        store.write_outbox([("not", "a row")])


def test_attempts_are_numbered_afresh_after_an_operator_retry(store):
    register(store)
    add(store, "a")
    [delivery] = store.claim_due("w", NOW, lease_s=30, limit=10)
    store.mark_failed(delivery.id, "w", NOW + 1, "refused", retry_at=None, url=URL)
    store.retry(delivery.id, NOW + 100)
    [delivery] = store.claim_due("w", NOW + 100, lease_s=30, limit=10)
    store.mark_delivered(delivery.id, "w", NOW + 101, url=URL)
    # As CallbackCount in the envelopes: the retry gave a fresh round.
    assert [(a.number, a.ok) for a in store.request_callbacks("request-a")[0].attempts] == [(1, False), (1, True)]


def test_the_callbacks_of_a_request_are_listed_oldest_first_with_whether_a_listener_waits(store):
    register(store)
    store.add_callback("late", ACCOUNT, SERVICE, "r", "{}", NOW + 5)
    store.add_callback("early", "unregistered", SERVICE, "r", "{}", NOW)
    store.add_callback("other", ACCOUNT, SERVICE, "another request", "{}", NOW)
    early, late = store.request_callbacks("r")
    assert (early.account, early.received_at, early.listener_registered, early.attempts) == ("unregistered", NOW, False, ())
    assert (late.account, late.state, late.next_attempt_at, late.listener_registered) == (ACCOUNT, "pending", NOW + 5, True)
    assert store.request_callbacks("unknown") == []


def test_the_last_attempt_of_each_listed_entry(store):
    register(store)
    for key in ("retried", "dead", "untried"):
        add(store, key)
    retried, dead, _ = store.claim_due("w", NOW, lease_s=30, limit=2) + [None]
    store.mark_failed(retried.id, "w", NOW + 1, "first", NOW + 10, url=URL)
    store.mark_failed(dead.id, "w", NOW + 1, "refused", None, url=URL)
    [retried] = store.claim_due("w", NOW + 10, lease_s=30, limit=1)
    store.mark_failed(retried.id, "w", NOW + 11, "second", NOW + 20, url=URL)

    assert {id: (a.number, a.outcome) for id, a in store.last_attempts("pending").items()} == {retried.id: (2, "second")}
    assert {id: (a.number, a.outcome) for id, a in store.last_attempts("dead").items()} == {dead.id: (1, "refused")}
    with pytest.raises(ValueError):
        store.last_attempts("delivered")


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


def test_the_attempts_of_a_purged_entry_go_with_it(store, settings):
    register(store)
    add(store, "old")
    add(store, "new")
    old, new = store.claim_due("w", NOW, lease_s=30, limit=10)
    store.mark_delivered(old.id, "w", NOW, url=URL)
    store.mark_failed(new.id, "w", NOW, "refused", None, url=URL)
    store.purge_delivered_before(NOW + 50)
    assert store.request_callbacks("request-old") == []
    assert len(store.request_callbacks("request-new")[0].attempts) == 1
    with store._write() as db:  # no attempt left behind without its entry
        ((orphans,),) = db.execute("SELECT COUNT(*) FROM attempts WHERE outbox_id NOT IN (SELECT id FROM outbox)").fetchall()
    assert orphans == 0


def test_timestamps_keep_their_fractions_of_a_second(store):
    now = 1_767_225_600.123456  # 2026, to the microsecond
    store.add_callback("a", ACCOUNT, SERVICE, "request-a", "{}", now)
    [entry] = store.outbox("pending")
    assert entry.received_at == entry.next_attempt_at == now


def test_an_id_is_never_reused_after_a_purge(store):
    register(store)
    add(store, "a")
    [first] = store.claim_due("w", NOW, lease_s=30, limit=10)
    store.mark_delivered(first.id, "w", NOW)
    store.purge_delivered_before(NOW + 1)
    add(store, "b")
    [second] = store.claim_due("w", NOW, lease_s=30, limit=10)
    assert second.id > first.id


@pytest.mark.process
def test_processes_claiming_at_once_never_get_the_same_entry(store, settings):
    register(store)
    for n in range(500):
        add(store, f"key-{n}")
    expected = ids(store.outbox("pending"))

    per_worker = run_processes(_claim_until_none_left, [(settings, f"worker-{n}") for n in range(4)])
    claimed = [entry_id for ids_of_one in per_worker for entry_id in ids_of_one]
    assert len(claimed) == len(set(claimed)), "an entry was claimed twice"
    assert sorted(claimed) == sorted(expected)
    assert sum(1 for ids_of_one in per_worker if ids_of_one) >= 2, "no two processes claimed at the same time"
    assert store.counts()["delivered"] == 500


@pytest.mark.process
def test_an_acknowledged_callback_survives_the_process_being_killed(settings):
    process = SPAWN.Process(target=_add_callbacks_then_die, args=(settings, 3))
    process.start()
    process.join(timeout=PROCESS_TIMEOUT_S)
    assert process.exitcode == -signal.SIGKILL

    store = open_store(settings)
    assert [e.request_id for e in store.outbox("pending")] == ["request-key-0", "request-key-1", "request-key-2"]
    store.close()


# -- the previous schema ------------------------------------------------------------------


# sha256 of repr() of each backend's first two steps as they shipped, each
# written out in full in its backend's module (commit 0b2b47e). SQLite keeps a
# CREATE statement's text as written: a shipped step may not change by a space.
SHIPPED_STEPS_SHA256 = {
    SqliteStore: "e140ae1e7a1e13f6662e47cfb9c0aeae1c641f2a13caef267eca78d8d46cd937",
    PostgresStore: "3029d4d349027d004ce5a3e249b3321c3f91a9a55f88ff4ef240fb18d3debd7d",
}


@pytest.mark.parametrize("backend", [SqliteStore, PostgresStore], ids=["sqlite", "postgres"])
def test_the_shipped_schema_steps_are_those_each_backend_wrote_out_before_they_were_written_once(backend):
    shipped = repr(backend.MIGRATIONS[:2]).encode()
    assert hashlib.sha256(shipped).hexdigest() == SHIPPED_STEPS_SHA256[backend]


def _open_at_schema(settings, version):
    """The store as the gateway of schema ``version`` created it (its first ``version`` migrations)."""
    backend = PostgresStore if settings.url else SqliteStore

    class OlderSchemaStore(backend):
        MIGRATIONS = backend.MIGRATIONS[:version]
        LISTENER_INDEX = ""  # outbox_listener_due came with step 4

    return OlderSchemaStore(settings.url or settings.path)


def test_callbacks_stored_before_the_listeners_index_are_claimed_after_the_upgrade_oldest_first(settings):
    old = _open_at_schema(settings, 3)
    register(old)
    add(old, "unlistened", now=NOW - 30, account="unregistered")
    add(old, "listened-1", now=NOW - 20)
    add(old, "listened-2", now=NOW - 10)
    old.close()

    store = open_store(settings)
    assert [d.request_id for d in store.claim_due("w", NOW, lease_s=30, limit=1)] == ["request-listened-1"]
    register(store, account="unregistered")
    assert [d.request_id for d in store.claim_due("w", NOW, lease_s=30, limit=10)] == ["request-unlistened", "request-listened-2"]
    store.close()


@pytest.mark.process
def test_a_store_written_by_the_previous_schema_opens_and_traces_what_arrives_after_the_upgrade(settings):
    old = _open_at_schema(settings, 1)
    register(old)
    old.add_callback("before", ACCOUNT, SERVICE, "r", json.dumps(_event("990000000000001")), NOW)
    [delivery] = old.claim_due("old-worker", NOW, lease_s=30, limit=10)
    with old._write() as db:  # what that gateway's remember_request and mark_failed wrote
        db.execute(
            "INSERT INTO requests (request_id, kind_spellings, remembered_at) VALUES ('r', :spellings, :now)",
            {"spellings": json.dumps({"imei": "Imei"}), "now": NOW - 1},
        )
        db.execute(
            """UPDATE outbox SET state = 'pending', attempts = attempts + 1, next_attempt_at = :retry_at,
            last_error = 'listener answered HTTP 503', last_error_at = :now, claimed_by = NULL, claimed_until = NULL
            WHERE id = :id""",
            {"id": delivery.id, "now": NOW, "retry_at": NOW + 5},
        )
    old.close()

    store = open_store(settings)
    assert store.forwarded_request("r") == ForwardedRequest("r", NOW - 1, None, None, {"imei": "Imei"})
    assert store.last_attempts("pending") == {}  # its first attempt was before the upgrade
    store.add_callback("after", ACCOUNT, SERVICE, "r", json.dumps(_event("990000000000002", "Failed")), NOW + 1)
    for delivery in store.claim_due("new-worker", NOW + 5, lease_s=30, limit=10):
        store.mark_delivered(delivery.id, "new-worker", NOW + 6, url=URL, duration_s=0.5)
    store.close()

    store_env = {"M2MGW_STORE_PATH": settings.path, "M2MGW_STORE_URL": settings.url or ""}
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "trace", "r", "--json"],
        env={**os.environ, **store_env}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    before, after = document["callbacks"]
    assert document["forwarded_at"] == iso_utc(NOW - 1)
    assert (before["device"], before["state"], before["last_error"]) == ("990000000000001", "delivered", "listener answered HTTP 503")
    # The envelope said CallbackCount 2: the first attempt was counted before the upgrade.
    assert [(a["number"], a["outcome"], a["ok"]) for a in before["attempts"]] == [(2, "acknowledged", True)]
    assert (after["device"], after["status"], after["state"]) == ("990000000000002", "Failed", "delivered")
    assert [(a["number"], a["at"], a["url"]) for a in after["attempts"]] == [(1, iso_utc(NOW + 5.5), URL)]


def _event(imei, status="Success"):
    """A callback's body as the receiver stores it."""
    return {"requestId": "r", "deviceIds": [{"kind": "imei", "id": imei}], "status": status}
