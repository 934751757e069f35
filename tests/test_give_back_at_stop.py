"""What a delivery worker stopped gracefully gives back: in process, a real SQLite file, a real
listener on 127.0.0.1.

The callbacks it holds but will not send (handed over or claimed, and not
started) go back to pending,
due at once, so another process, or this one restarted, delivers them without
waiting out their lease. What the listener may have acknowledged (an outcome
not yet recorded, a POST still under way) stays claimed: its lease lapses as
a killed process's would. Leases here are an hour: a delivery by another
worker within the tests' waits is one that did not wait for them.
"""

import logging
import time

import pytest

from gateway.callbacks import delivery
from gateway.callbacks.delivery import DeliveryWorker
from gateway.callbacks.policy import ListenerPolicy
from gateway.exceptions import StoreUnavailable
from gateway.store import SqliteStore
from tests.test_callbacks import ACCOUNT
from tests.test_delivery_faults import WriteLock, delivered_request_ids, idle, running_worker, settings, wait_until
from tests.test_hand_off import SERVICE, post, receiver_of

LEASE_S = 3600


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "store.sqlite3"


@pytest.fixture
def store(store_path, listener):
    # A short busy timeout: a locked file fails a write in a second, not 5.
    store = SqliteStore(store_path, busy_timeout_s=1.0)
    store.put_registration(ACCOUNT, SERVICE, listener.url, "legacy", "pw")
    yield store
    store.close()


def held_worker(store):
    """A worker never started: what it is handed waits."""
    held = settings(claim_lease_s=LEASE_S)
    return DeliveryWorker(store, held.callbacks, 3600, ListenerPolicy.from_config(held))


def delivered_by_another_worker(store, count):
    other = running_worker(store, settings())
    try:
        wait_until(lambda: store.counts()["delivered"] == count, what="the deliveries by another worker")
    finally:
        other.stop(timeout=5)


def test_callbacks_handed_over_that_no_sender_took_are_given_back_at_stop_and_delivered_by_another_worker_at_once(
    store, listener
):
    stopped = held_worker(store)
    receiver = receiver_of(store, stopped)
    for n in range(3):
        assert post(receiver, f"r-{n}") == "stored"
    assert store.counts()["claimed"] == 3

    stopped.stop(timeout=5)

    assert store.counts() == {"pending": 3, "claimed": 0, "delivered": 0, "dead": 0}
    delivered_by_another_worker(store, 3)
    assert sorted(delivered_request_ids(listener)) == ["r-0", "r-1", "r-2"]


def test_callbacks_waiting_for_room_at_stop_are_given_back_and_those_under_way_finish(store, listener, monkeypatch):
    monkeypatch.setattr(delivery, "SLOW_POST_S", 30.0)  # handed over however long the listener takes
    listener.delay_s = 1.0  # every delivery is under way when the worker is told to stop
    worker = running_worker(store, settings(claim_lease_s=LEASE_S, timeout_s=10))
    idle(worker)
    receiver = receiver_of(store, worker)
    for n in range(delivery.IN_FLIGHT + 3):
        assert post(receiver, f"r-{n}") == "stored"
    assert len(worker._sending) == delivery.IN_FLIGHT and len(worker._handed) == 3

    worker.stop(timeout=10)  # the POSTs under way finish, nothing more starts

    assert store.counts() == {"pending": 3, "claimed": 0, "delivered": delivery.IN_FLIGHT, "dead": 0}
    listener.delay_s = 0
    delivered_by_another_worker(store, delivery.IN_FLIGHT + 3)
    assert sorted(delivered_request_ids(listener)) == sorted(f"r-{n}" for n in range(delivery.IN_FLIGHT + 3))


class RecordsNothing(SqliteStore):
    """The real store, whose outcome writes all fail while ``failing``, as when the store is down,
    while its other writes (the claims given back) go through."""

    failing = True

    def outbox_batch_writer(self, wait_s, what, linger_s=0.0):
        write_all = super().outbox_batch_writer(wait_s, what, linger_s)

        def write(rows):
            if self.failing:
                return [StoreUnavailable(f"{what} not written: the store is down")] * len(rows)
            return write_all(rows)

        return write


def test_a_callback_whose_acknowledgement_is_not_recorded_yet_is_not_given_back(store_path, listener):
    store = RecordsNothing(store_path)
    store.put_registration(ACCOUNT, SERVICE, listener.url, "legacy", "pw")
    worker = running_worker(store, settings(claim_lease_s=LEASE_S))
    try:
        idle(worker)
        post(receiver_of(store, worker), "r-acknowledged")
        wait_until(lambda: delivered_request_ids(listener) == ["r-acknowledged"], what="the acknowledgement")

        worker.stop(timeout=5)  # its record fails to the end

        # Given back, it would be sent again: it stays claimed until its lease lapses.
        assert store.counts() == {"pending": 0, "claimed": 1, "delivered": 0, "dead": 0}
        assert store.claim_due("another-worker", time.time() + LEASE_S - 10, lease_s=10, limit=10) == []
    finally:
        store.close()


def test_a_callback_whose_post_outlives_the_stop_is_not_given_back_and_is_recorded_once_answered(store, listener):
    listener.delay_s = 2.0
    worker = running_worker(store, settings(claim_lease_s=LEASE_S, timeout_s=10))
    idle(worker)
    post(receiver_of(store, worker), "r-slow")
    wait_until(lambda: worker._posting, what="the POST under way")

    worker.stop(timeout=0.1)  # its sender is still waiting for the listener

    assert store.counts() == {"pending": 0, "claimed": 1, "delivered": 0, "dead": 0}
    wait_until(lambda: store.counts()["delivered"] == 1, what="the answer recorded")
    assert delivered_request_ids(listener) == ["r-slow"]


def test_a_store_that_fails_at_stop_leaves_the_claims_to_lapse_and_the_stop_completes(store, store_path, caplog):
    caplog.set_level(logging.INFO)
    stopped = held_worker(store)
    receiver = receiver_of(store, stopped)
    for n in range(2):
        post(receiver, f"r-{n}")

    with WriteLock(store_path):
        stopped.stop(timeout=5)

    assert store.counts() == {"pending": 0, "claimed": 2, "delivered": 0, "dead": 0}
    [line] = [record.getMessage() for record in caplog.records if "given back" in record.getMessage()]
    assert line.startswith("2 callbacks held unsent not given back at stop") and "database is locked" in line, line
