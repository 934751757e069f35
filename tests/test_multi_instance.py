"""Two gateway instances sharing one PostgreSQL database: every callback delivered, none twice.

Real processes, as in production behind a load balancer: two ``m2m-gateway
serve`` on their own ports, the ThingSpace simulator, a legacy listener, and
the session's throwaway PostgreSQL server (tests/conftest_postgres.py).
"""

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests

from gateway.store import PostgresStore
from tests.conftest import Gateway, wait_until_settled
from tests.test_callbacks import ACCOUNT, go_to_state, identity, parsed, receiver_url, register, rest_callback

pytestmark = pytest.mark.process

# The timeout of one POST to a listener, short in the kill test.
DELIVERY_TIMEOUT_S = 0.5
# The kill test's claim lease ([callbacks] claim_lease_s): the killed
# instance's claims lapse after it, and the test waits it out. Short, so that
# the wait is short; the default's own wait is test_store_outages's.
LEASE_S = 2
# Where no instance dies: long enough that the listener in this busy pytest
# process always answers in time, so that a second copy of a callback can
# only be a claim given out twice, never a timed-out first POST sent again.
PATIENT_DELIVERY_TIMEOUT_S = 10


def instance(tmp_path, name, simulator, postgres_url, delivery_timeout_s=PATIENT_DELIVERY_TIMEOUT_S, **settings):
    """A gateway on the shared database, with quick retries; its files in a directory of its own;
    ``settings`` as Gateway's."""
    directory = tmp_path / name
    directory.mkdir()
    return Gateway(
        directory,
        simulator.url,
        store_url=postgres_url,
        callbacks_timeout_s=delivery_timeout_s,
        callbacks_backoff_s="0.2",
        callbacks_max_attempts="8",
        **settings,
    )


def callback_to(gateway, body):
    return requests.post(receiver_url(gateway), json=body, timeout=30)


def post_callbacks(gateway, store, request_ids, imei_prefix):
    """A callback for each of ``request_ids`` posted to ``gateway`` as ThingSpace does (``store``'s
    credentials), device ``imei_prefix`` and two digits; each acknowledged."""
    username, password = store.callback_credentials()
    for n, request_id in enumerate(request_ids):
        body = rest_callback(request_id, f"{imei_prefix}{n:02d}", username=username, password=password)
        assert callback_to(gateway, body).status_code == 200


def wait_until(condition, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.05)
    return result


def test_a_go_to_state_through_one_instance_is_called_back_through_the_other_exactly_once(
    tmp_path, simulator, listener, postgres_url
):
    simulator.reset()
    first = instance(tmp_path, "first", simulator, postgres_url).start()
    second = instance(tmp_path, "second", simulator, postgres_url).start()
    try:
        # Registered through the second: ThingSpace calls back the second,
        # with the callback credentials the instances share through the store.
        token = register(second, listener.url)
        request_id = go_to_state(first, token, [[("Imei", "990000862471901")], [("Imei", "990000862471902")]])
        listener.wait_for(2)
        wait_until_settled(first, delivered=2)
        envelopes = listener.acknowledged()
    finally:
        first.stop()
        second.stop()
    (registered,) = [r for r in simulator.requests(f"/api/m2m/v1/callbacks/{ACCOUNT}") if r["method"] == "POST"]
    assert registered["json"]["url"] == receiver_url(second)
    assert sorted(identity(envelope) for envelope in envelopes) == [
        (request_id, "990000862471901"),
        (request_id, "990000862471902"),
    ]
    # Spelled as the client spelled it to the first: the request memory is shared too.
    assert {parsed(envelope)[1]("v2:Device/v2:Kind") for envelope in envelopes} == {"Imei"}


def test_the_callbacks_a_killed_instance_held_are_delivered_by_the_other_once_its_lease_ends(
    tmp_path, simulator, listener, postgres_url
):
    simulator.reset()
    # Stalling: answers 503, and only after the gateway's POST has timed out.
    listener.status, listener.delay_s = 503, DELIVERY_TIMEOUT_S * 3
    doomed = instance(tmp_path, "doomed", simulator, postgres_url, DELIVERY_TIMEOUT_S, callbacks_claim_lease_s=LEASE_S)
    doomed.start()
    survivor = instance(tmp_path, "survivor", simulator, postgres_url, DELIVERY_TIMEOUT_S, callbacks_claim_lease_s=LEASE_S)
    observer = PostgresStore(postgres_url)
    count = 6
    try:
        register(doomed, listener.url)
        post_callbacks(doomed, observer, [f"r-kill-{n}" for n in range(count)], "9900000000010")

        # The survivor is started only after the kill, so every claim is the doomed one's.
        def claims():
            with psycopg.connect(postgres_url) as db:
                return dict(db.execute("SELECT request_id, claimed_until FROM outbox WHERE state = 'claimed'"))

        wait_until(lambda: len(claims()) >= 3, 10, "the doomed instance claiming callbacks")
        doomed.stop(signal.SIGKILL)
        killed_at = time.time()
        held = claims()
        listener.status, listener.delay_s = 200, 0.0
        survivor.start()
        wait_until(lambda: len(listener.acknowledged()) >= count, LEASE_S + 30, "every callback acknowledged")
        wait_until_settled(survivor, delivered=count)
    finally:
        survivor.stop()
        doomed.stop()
        observer.close()
    acknowledged = listener.acknowledged_at()
    delivered = {identity(body)[0]: when for when, body in acknowledged}
    assert len(acknowledged) == len(delivered) == count
    assert sorted(delivered) == [f"r-kill-{n}" for n in range(count)]
    assert len(held) >= 3
    for request_id, lease_end in held.items():
        assert lease_end <= killed_at + LEASE_S, f"{request_id} claimed past the configured lease"
        assert delivered[request_id] >= lease_end, f"{request_id} taken from its claim holder before the lease ended"


def test_the_callbacks_an_instance_stopped_gracefully_held_unsent_are_delivered_by_the_other_without_waiting_for_its_lease(
    tmp_path, simulator, listener, postgres_url
):
    simulator.reset()
    # Stalling, as in the kill test, each POST long enough that none ends before the stop:
    # what is posted past the deliveries under way waits, handed over.
    timeout_s = 2.0
    listener.status, listener.delay_s = 503, timeout_s * 3
    # A lease the test cannot wait out: what the other delivers, it was given back.
    stopping = instance(tmp_path, "stopping", simulator, postgres_url, timeout_s, callbacks_claim_lease_s=3600)
    stopping.start()
    survivor = instance(tmp_path, "survivor", simulator, postgres_url, DELIVERY_TIMEOUT_S, callbacks_claim_lease_s=3600)
    observer = PostgresStore(postgres_url)
    count = 30  # more than it delivers at once (IN_FLIGHT): some wait, handed over
    try:
        register(stopping, listener.url)
        post_callbacks(stopping, observer, [f"r-stop-{n}" for n in range(count)], "9900000000020")
        wait_until(lambda: observer.counts()["claimed"] > 10, 10, "the stopping instance holding callbacks")

        stopping.stop(signal.SIGTERM)  # its POSTs under way end (timed out) and are recorded; the rest it gives back

        assert observer.counts()["claimed"] == 0, stopping.log()[-3000:]
        assert "given back at stop, for any instance to deliver now" in stopping.log()
        listener.status, listener.delay_s = 200, 0.0
        survivor.start()
        wait_until(lambda: len(listener.acknowledged()) >= count, 30, "every callback acknowledged")
        wait_until_settled(survivor, delivered=count)
    finally:
        survivor.stop()
        stopping.stop()
        observer.close()
    delivered = sorted(identity(body)[0] for body in listener.acknowledged())
    assert delivered == sorted(f"r-stop-{n}" for n in range(count))


def test_two_thousand_callbacks_spread_over_both_instances_are_each_delivered_once(
    tmp_path, simulator, listener, postgres_url
):
    simulator.reset()
    instances = [instance(tmp_path, name, simulator, postgres_url).start() for name in ("a", "b")]
    count = 2000
    try:
        register(instances[0], listener.url)
        store = PostgresStore(postgres_url)
        username, password = store.callback_credentials()
        store.close()

        def post(n):
            body = rest_callback(f"r-many-{n}", f"99{n:013d}", username=username, password=password)
            return callback_to(instances[n % 2], body).status_code

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(post, range(count))) == {200}
        listener.wait_for(count, timeout_s=240)
        print(f"\n{count} callbacks stored and delivered by two instances in {time.monotonic() - started:.1f} s")
        wait_until_settled(instances[0], delivered=count)
    finally:
        for gateway in instances:
            gateway.stop()
    acknowledged = [identity(envelope) for envelope in listener.acknowledged()]
    assert len(listener.all()) == len(acknowledged) == len(set(acknowledged)) == count
    delivered_by = [gateway.log().count(" delivered (attempt ") for gateway in instances]
    assert sum(delivered_by) == count and min(delivered_by) > 0, delivered_by
