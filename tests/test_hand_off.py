"""Callbacks the receiver hands straight to its process's delivery worker: in process, a real
SQLite file, a real listener on 127.0.0.1.

A callback whose listener has nothing older due is stored already claimed by
the process's delivery worker and handed to its loop: no claim transaction
for it. What the loop cannot take soon (too many waiting already, or a
delivery held by a slow listener), and what waits behind older entries, is
stored for any worker to claim, as before; a callback that finds enough
entries waiting first waits a little for the loop to take one (never, when
told not to wait); and a handed entry whose worker dies before sending it is
taken by another once its lease lapses.
"""

import json
import threading
import time

import pytest
from werkzeug.test import Client

from gateway.callbacks import delivery
from gateway.callbacks.policy import ListenerPolicy
from gateway.callbacks.receiver import CallbackReceiver
from tests.conftest import Listener
from tests.test_callbacks import ACCOUNT, THINGSPACE_PASSWORD, THINGSPACE_USER, rest_callback
from tests.test_delivery_faults import (
    ClaimCountingStore,
    WriteLock,
    delivered_request_ids,
    idle,
    running_worker,
    settings,
    wait_until,
)

SERVICE = "StateService"


@pytest.fixture
def store(tmp_path, listener):
    store = ClaimCountingStore(tmp_path / "store.sqlite3")
    store.put_registration(ACCOUNT, SERVICE, listener.url, "legacy", "pw")
    yield store
    store.close()


def post(receiver, request_id, account=ACCOUNT):
    body = json.dumps(rest_callback(request_id, "990000862471854"))
    answer = Client(receiver).post(f"/{account}/{SERVICE}", data=body, content_type="application/json")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()["message"]


def receiver_of(store, worker):
    return CallbackReceiver(store, lambda: (THINGSPACE_USER, THINGSPACE_PASSWORD), delivery=worker)


def test_callbacks_received_while_the_worker_is_idle_are_delivered_without_a_claim(store, listener, monkeypatch):
    monkeypatch.setattr(delivery, "IDLE_POLL_S", 60.0)  # the worker does not claim on its own meanwhile
    worker = running_worker(store, settings())
    receiver = receiver_of(store, worker)
    try:
        idle(worker)
        claims_before = store.claims
        for n in range(3):
            assert post(receiver, f"r-{n}") == "stored"
            wait_until(lambda: store.counts()["delivered"] == n + 1, what="the delivery")
            idle(worker)
        assert store.claims == claims_before
    finally:
        worker.stop(timeout=5)
    assert delivered_request_ids(listener) == ["r-0", "r-1", "r-2"]


def test_a_handed_over_callback_the_listener_refuses_is_retried_after_its_backoff_not_the_next_poll(store, listener, monkeypatch):
    monkeypatch.setattr(delivery, "IDLE_POLL_S", 60.0)  # a retry left to the idle poll would come a minute late
    listener.next_statuses = [503]
    worker = running_worker(store, settings(backoff_s=0.2))
    receiver = receiver_of(store, worker)
    try:
        idle(worker)
        post(receiver, "r-refused")
        wait_until(lambda: store.counts()["delivered"] == 1, what="the retry delivered", timeout_s=10)
    finally:
        worker.stop(timeout=5)
    [(_, _, _, first, first_at), (_, _, _, second, second_at)] = listener.received
    assert (first, second) == (503, 200)
    assert second_at - first_at >= 0.2


class DiesAfterTheCommit(delivery.DeliveryWorker):
    """A worker whose process is killed right after a callback handed to it was committed."""

    def stored(self, result):
        self.stop(timeout=5)


def test_a_callback_handed_to_a_worker_that_dies_before_sending_it_is_taken_by_another_once_its_lease_lapses(store, listener):
    dying = DiesAfterTheCommit(store, settings(claim_lease_s=1).callbacks, 3600, None).start()
    idle(dying)
    assert post(receiver_of(store, dying), "r-orphan") == "stored"
    assert store.counts()["claimed"] == 1
    other = running_worker(store, settings())
    try:
        wait_until(lambda: store.counts()["delivered"] == 1, what="the delivery by the other worker", timeout_s=10)
    finally:
        other.stop(timeout=5)
    assert delivered_request_ids(listener) == ["r-orphan"]


def test_entries_handed_over_together_are_delivered_together_not_one_behind_a_slow_listener(store, listener):
    listener.delay_s = 3.0  # the first entry's listener: slow, though not past SLOW_POST_S when the second is posted
    fast = Listener()
    store.put_registration("0000123456-00002", SERVICE, fast.url, "legacy", "pw")
    worker = delivery.DeliveryWorker(store, settings(timeout_s=10).callbacks, 3600, ListenerPolicy.from_config(settings()))
    receiver = receiver_of(store, worker)
    try:
        assert post(receiver, "r-slow") == "stored"
        assert post(receiver, "r-fast", account="0000123456-00002") == "stored"
        assert len(worker._handed) == 2  # both wait for the loop to start
        worker.start()
        fast.wait_for(1)
        assert listener.acknowledged() == []  # the slow listener has not answered yet
    finally:
        worker.stop(timeout=5)
        fast.close()


def test_callbacks_past_what_the_worker_can_take_soon_are_stored_for_any_worker_to_claim(store):
    stalled = delivery.DeliveryWorker(store, settings().callbacks, 3600, None)  # not started: nothing takes what it is handed
    receiver = receiver_of(store, stalled)
    for n in range(delivery.HANDED_MAX + 3):
        assert post(receiver, f"r-{n}") == "stored"
    assert store.counts() == {"pending": 3, "claimed": delivery.HANDED_MAX, "delivered": 0, "dead": 0}
    assert len(stalled._handed) == delivery.HANDED_MAX
    # A receiver that must not wait (on an event loop) is told at once to store it for any worker.
    started = time.monotonic()
    assert stalled.hand_off_claim(time.time(), wait_s=0) == (None, None)
    assert time.monotonic() - started < delivery.HAND_OFF_WAIT_S


def posted_in_thread(receiver, request_id):
    """A thread posting ``request_id``, started; the answer's message lands in its ``answers``."""
    thread = threading.Thread(target=lambda: thread.answers.append(post(receiver, request_id)))
    thread.answers = []
    thread.start()
    return thread


def test_a_callback_finding_the_worker_behind_waits_for_it_to_take_an_entry_and_is_handed_over(store, listener, monkeypatch):
    monkeypatch.setattr(delivery, "HAND_OFF_WAIT_S", 30.0)
    monkeypatch.setattr(delivery, "SLOW_POST_S", 30.0)  # the listener is slow, but not that slow
    monkeypatch.setattr(delivery, "IDLE_POLL_S", 60.0)  # no claim on its own meanwhile
    listener.delay_s = 3.0  # every delivery under way waits for it
    behind = running_worker(store, settings(timeout_s=10))
    receiver = receiver_of(store, behind)
    idle(behind)
    claims_before = store.claims
    try:
        for n in range(delivery.IN_FLIGHT + delivery.HANDED_MAX):
            post(receiver, f"r-{n}")
        late = posted_in_thread(receiver, "r-late")
        time.sleep(0.3)
        assert late.answers == []  # still waiting
        assert len(behind._handed) == delivery.HANDED_MAX and len(behind._sending) == delivery.IN_FLIGHT
        late.join(timeout=10)  # the first answers free a delivery's place: the loop takes the oldest handed over
        assert late.answers == ["stored"]
        wait_until(lambda: store.counts()["delivered"] == delivery.IN_FLIGHT + delivery.HANDED_MAX + 1, timeout_s=20,
                   what="every delivery")
        assert store.claims == claims_before  # none: every one was handed over
    finally:
        behind.stop(timeout=5)
    assert "r-late" in delivered_request_ids(listener)


class KeepsWhatWasStored(delivery.DeliveryWorker):
    """A worker that keeps what the receiver told it it stored, in order."""

    def __init__(self, *args):
        super().__init__(*args)
        self.results = []

    def stored(self, result):
        self.results.append(result)
        super().stored(result)


def test_a_callback_waiting_for_room_when_the_worker_stops_is_stored_for_any_worker_to_claim(store, monkeypatch):
    monkeypatch.setattr(delivery, "HAND_OFF_WAIT_S", 30.0)
    behind = KeepsWhatWasStored(store, settings().callbacks, 3600, None)
    receiver = receiver_of(store, behind)
    for n in range(delivery.HANDED_MAX):
        post(receiver, f"r-{n}")
    late = posted_in_thread(receiver, "r-late")
    time.sleep(0.3)
    behind.stop(timeout=5)
    late.join(timeout=10)
    assert late.answers == ["stored"]
    assert behind.results[-1] is True  # stored unclaimed, not handed over
    # Those handed over before it are given back at the stop (test_give_back_at_stop).
    assert store.counts() == {"pending": delivery.HANDED_MAX + 1, "claimed": 0, "delivered": 0, "dead": 0}


def test_callbacks_arriving_while_a_listener_holds_a_delivery_are_stored_for_any_worker_to_claim(store, listener, monkeypatch):
    monkeypatch.setattr(delivery, "IDLE_POLL_S", 60.0)  # the worker does not claim on its own meanwhile
    listener.delay_s = 2 * delivery.SLOW_POST_S
    worker = running_worker(store, settings(timeout_s=10))
    receiver = receiver_of(store, worker)
    try:
        idle(worker)
        claims_before = store.claims
        post(receiver, "r-slow")
        wait_until(lambda: worker._slow_post(), what="a POST under way past SLOW_POST_S")
        post(receiver, "r-behind")  # not handed over to wait behind it: stored, and claimed
        wait_until(lambda: store.counts()["delivered"] == 2, what="both deliveries")
        assert store.claims - claims_before >= 1
    finally:
        worker.stop(timeout=5)
    assert sorted(delivered_request_ids(listener)) == ["r-behind", "r-slow"]


def test_a_callback_refused_while_the_store_is_locked_is_handed_over_only_once_it_is_stored(tmp_path, listener):
    path = tmp_path / "locked.sqlite3"
    store = ClaimCountingStore(path, busy_timeout_s=0.3)
    store.put_registration(ACCOUNT, SERVICE, listener.url, "legacy", "pw")
    worker = running_worker(store, settings())
    receiver = receiver_of(store, worker)
    body = json.dumps(rest_callback("r-locked", "990000862471854"))
    try:
        idle(worker)
        with WriteLock(path):
            refused = Client(receiver).post(f"/{ACCOUNT}/{SERVICE}", data=body, content_type="application/json")
        assert refused.status_code == 503
        assert store.counts()["delivered"] == 0 and listener.received == []
        claims_before = store.claims
        assert post(receiver, "r-locked") == "stored"  # ThingSpace sends it again
        wait_until(lambda: store.counts()["delivered"] == 1, what="the delivery")
        assert store.claims == claims_before  # handed over, not claimed
    finally:
        worker.stop(timeout=5)
        store.close()
    assert delivered_request_ids(listener) == ["r-locked"]
