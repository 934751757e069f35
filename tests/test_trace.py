"""`m2m-gateway trace`: one GoToState followed end to end, as an operator on any host reads it.

Real processes: the simulator, a gateway (SQLite or the session's PostgreSQL),
a legacy listener, and `trace` run as its own process that handled nothing.
"""

import datetime
import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from gateway import trace as trace_story
from gateway.logs import iso_utc
from gateway.store import Attempt, ForwardedRequest, StoredCallback
from tests.conftest import ROOT
from tests.test_callbacks import (
    LEGACY_PASSWORD,
    THINGSPACE_PASSWORD,
    bridge,
    go_to_state,
    register,
)

IMEIS = ("990000862471951", "990000862471952", "990000862471953")
URL_SECRETS = ("url-secret-5e1a", "query-secret-77")


def trace(store_env, *args):
    """`m2m-gateway trace` in a process of its own that sees only the store's settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("M2MGW_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "trace", *args], cwd=ROOT, env={**env, **store_env},
        capture_output=True, text=True, timeout=60,
    )


def traced_until(store_env, request_id, done, timeout_s=30):
    """The --json trace once ``done(document)`` holds: delivery is recorded just after the listener answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = trace(store_env, request_id, "--json")
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        if done(document):
            return document
        assert time.monotonic() < deadline, f"not done within {timeout_s} s: {result.stdout}"
        time.sleep(0.2)


def all_delivered(count):
    return lambda document: len(document["callbacks"]) == count and all(
        callback["state"] == "delivered" for callback in document["callbacks"]
    )


def instant(text):
    assert text.endswith("Z"), text
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.process
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_go_to_state_whose_first_delivery_failed_is_traced_attempt_by_attempt(
    backend, tmp_path, simulator, listener, request
):
    simulator.reset()
    if backend == "postgres":
        url = request.getfixturevalue("postgres_url")
        gateway = bridge(tmp_path, simulator, store_url=url)
        # Another host: no SQLite file of the gateway's, only the shared database.
        store_env = {"M2MGW_STORE_URL": url, "M2MGW_STORE_PATH": str(tmp_path / "elsewhere" / "unused.sqlite3")}
    else:
        gateway = bridge(tmp_path, simulator)
        store_env = {"M2MGW_STORE_PATH": gateway.env["M2MGW_STORE_PATH"]}
    listener.next_statuses.append(500)
    secret_url = listener.url.replace("http://", f"http://hook:{URL_SECRETS[0]}@") + f"?key={URL_SECRETS[1]}"
    started = time.time()
    gateway.start()
    try:
        token = register(gateway, secret_url)
        request_id = go_to_state(gateway, token, [[("IMEI", imei)] for imei in IMEIS])
        listener.wait_for(3)
        document = traced_until(store_env, request_id, all_delivered(3))
        text = trace(store_env, request_id)
        unknown = trace(store_env, "no-such-request")
    finally:
        gateway.stop()
    finished = time.time()

    assert document["request_id"] == request_id
    assert document["devices"] == 3
    assert started <= instant(document["forwarded_at"]) <= finished
    callbacks = document["callbacks"]
    assert sorted(callback["device"] for callback in callbacks) == sorted(IMEIS)
    assert all(callback["status"] == "Success" for callback in callbacks)
    assert sorted(len(callback["attempts"]) for callback in callbacks) == [1, 1, 2]
    (retried,) = [callback for callback in callbacks if len(callback["attempts"]) == 2]
    failed, delivered = retried["attempts"]
    assert (failed["ok"], delivered["ok"]) == (False, True)
    assert "HTTP 500" in failed["outcome"]
    assert (failed["number"], delivered["number"]) == (1, 2)
    for callback in callbacks:
        received = instant(callback["received_at"])
        assert instant(document["forwarded_at"]) <= received <= finished
        for attempt in callback["attempts"]:
            assert received <= instant(attempt["at"]) <= finished
            assert attempt["url"] == listener.url
            assert attempt["duration_s"] >= 0
    assert instant(failed["at"]) < instant(delivered["at"])

    assert text.returncode == 0, text.stderr
    assert request_id in text.stdout
    assert all(imei in text.stdout for imei in IMEIS)
    assert "HTTP 500" in text.stdout
    assert unknown.returncode == 1
    assert unknown.stdout == "" and unknown.stderr.strip().splitlines() == [
        "m2m-gateway: request 'no-such-request' is not in the store"
    ]
    shown = text.stdout + json.dumps(document)
    for secret in (LEGACY_PASSWORD, THINGSPACE_PASSWORD, token, *URL_SECRETS):
        assert secret not in shown


@pytest.mark.process
def test_a_go_to_state_the_store_could_not_remember_is_answered_and_its_callbacks_traced(
    tmp_path, simulator, listener, caplog
):
    simulator.reset()
    gateway = bridge(tmp_path, simulator)
    store_env = {"M2MGW_STORE_PATH": gateway.env["M2MGW_STORE_PATH"]}
    gateway.start()
    try:
        token = register(gateway, listener.url)
        with sqlite3.connect(store_env["M2MGW_STORE_PATH"]) as db:  # the request memory fails, the rest works
            db.execute("CREATE TRIGGER refuse BEFORE INSERT ON requests BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
        request_id = go_to_state(gateway, token, [[("IMEI", IMEIS[0])]])
        listener.wait_for(1)
        document = traced_until(store_env, request_id, all_delivered(1))
    finally:
        gateway.stop()
    assert request_id  # ThingSpace accepted it: the client got its RequestId
    assert document["forwarded_at"] is None
    assert [callback["device"] for callback in document["callbacks"]] == [IMEIS[0]]
    assert "requestId=%s: not remembered" % request_id in caplog.text  # the in-process gateway's log


# -- the story, from the store's records (no process needed) ---------------------------------


def _stored(id, state, imei, *, status="Success", listener=True, attempts=(), last_error=None, response=None):
    body = {"requestId": "r", "deviceIds": [{"kind": "imei", "id": imei}], "status": status}
    if response:
        body["deviceResponse"] = {"goToStateResponse": response}
    return StoredCallback(id, "acct", "StateService", state, 1000.0 + id, 2000.0, last_error, listener, json.dumps(body), attempts)


def test_each_state_of_a_callback_is_told_with_what_an_operator_needs_next():
    failed = Attempt(2, 1, 1003.0, "http://listener.example/cb", "listener answered HTTP 503", False, 0.0125)
    document = trace_story.story(
        "r",
        ForwardedRequest("r", 999.5, "acct", 4, {"imei": "Imei"}),
        [
            _stored(1, "pending", "990000000000001", listener=False),
            _stored(2, "pending", "990000000000002", attempts=(failed,), last_error=failed.outcome),
            _stored(3, "claimed", "990000000000003"),
            _stored(4, "dead", "990000000000004", status="Failed", last_error="no listener registered within 60 s",
                    response={"stageStateChangeReasonCode": "DEVICE_NOT_READY", "stageStateChangeReasonDesc": "Not ready"}),
        ],
    )
    waiting, retrying, sending, dead = document["callbacks"]
    assert (document["forwarded_at"], document["account"], document["devices"]) == (iso_utc(999.5), "acct", 4)
    assert (waiting["state"], waiting["next_retry_at"]) == ("waiting", None)
    assert (retrying["state"], retrying["next_retry_at"]) == ("pending", iso_utc(2000.0))
    assert retrying["attempts"] == [{
        "number": 1, "at": iso_utc(1003.0), "url": "http://listener.example/cb",
        "outcome": "listener answered HTTP 503", "ok": False, "duration_s": 0.013,
    }]
    assert (sending["state"], sending["next_retry_at"]) == ("pending", None)
    assert (dead["state"], dead["status"], dead["reason"]) == ("dead", "Failed", "DEVICE_NOT_READY: Not ready")

    lines = trace_story.timeline(document).splitlines()
    assert lines[:2] == ["request r", f"  {iso_utc(999.5)}  forwarded to ThingSpace: 4 devices, account acct, kinds spelled Imei"]
    text = "\n".join(lines)
    assert "device imei 990000000000001, Success; waiting for a listener for acct StateService" in text
    assert f"device imei 990000000000002, Success; pending, next attempt {iso_utc(2000.0)}" in text
    assert f"    {iso_utc(1003.0)}  attempt 1 to http://listener.example/cb: listener answered HTTP 503 (13 ms)" in text
    assert "device imei 990000000000003, Success; pending, being delivered" in text
    assert "device imei 990000000000004, Failed (DEVICE_NOT_READY: Not ready); dead" in text
    assert "    given up: no listener registered within 60 s" in text


def test_a_request_the_store_does_not_know_has_no_story_and_one_not_remembered_says_so():
    assert trace_story.story("r", None, []) is None
    document = trace_story.story("r", None, [_stored(1, "delivered", "990000000000001")])
    assert document["forwarded_at"] is None
    text = trace_story.timeline(document)
    assert "forwarding not known to this store" in text
    assert "its attempts were made before the gateway kept them" in text
    assert "no callback received yet" in trace_story.timeline(trace_story.story("r", ForwardedRequest("r", 1.0, None, None, {}), []))
