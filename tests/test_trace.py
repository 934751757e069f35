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


def test_a_go_to_state_the_store_could_not_remember_is_answered_and_its_callbacks_traced(
    tmp_path, simulator, listener
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
    assert "requestId=%s: not remembered" % request_id in gateway.log()
