"""Faults injected into the simulator through ``/_simulator/faults``, over real HTTP on 127.0.0.1."""

import json
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from tests.test_simulator import (  # noqa: F401 (fixtures)
    ACCOUNT,
    FAILED,
    WAIT_S,
    assert_error,
    go_to_state_order,
    listener,
    listeners,
    simulator_log,
    start_simulator,
    thingspace,
    wait_for_log,
)

GO_TO_STATE = "/api/m2m/v1/devices/actions/goToState"
LOGIN = "/api/m2m/v1/session/login"
TOKEN = "/api/ts/v1/oauth2/token"
CALLBACKS = f"/api/m2m/v1/callbacks/{ACCOUNT}"
# Delays kept short; long enough for a callback (sent at once in these tests) to arrive.
DELAY_S = 0.3


def posts_after(listener, seconds):
    """How many POSTs ``listener`` has had once ``seconds`` more have passed."""
    time.sleep(seconds)
    return len(listener.all())


def inject(thingspace, path, fault, **fields):
    response = thingspace.control("POST", "faults", json={"path": path, "fault": fault, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def recorded(thingspace, path):
    return [entry for entry in thingspace.control("GET", "requests").json() if entry["path"] == path]


def answered_entries(thingspace, path, count):
    """The recorded requests to ``path`` once ``count`` of them have their answer recorded."""
    deadline = time.monotonic() + WAIT_S
    while True:
        entries = recorded(thingspace, path)
        if len(entries) >= count and all("status" in entry for entry in entries):
            return entries
        assert time.monotonic() < deadline, f"{len(entries)} requests to {path} recorded: {entries}"
        time.sleep(0.05)


def raw_exchange(thingspace, method, path, headers, body):
    """Every byte the simulator sends back to one HTTP/1.1 request, read until it closes."""
    address = urlsplit(thingspace.base_url)
    head = [f"{method} {path} HTTP/1.1", f"Host: {address.netloc}", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    received = b""
    with socket.create_connection((address.hostname, address.port), timeout=WAIT_S) as connection:
        connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        while chunk := connection.recv(65536):
            received += chunk
    return received


# -- Registering and clearing --------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"fault": "timeout"}, {"times": 1, "delay_s": 5.0}),
        ({"fault": "timeout", "times": 3, "delay_s": 0.25}, {"times": 3, "delay_s": 0.25}),
        ({"fault": "drop"}, {"times": 1, "delay_s": 0.0}),
        ({"fault": "status-429", "times": 2}, {"times": 2, "delay_s": 0.0}),
    ],
)
def test_injecting_echoes_the_fault_with_its_defaults(thingspace, fields, expected):
    assert inject(thingspace, GO_TO_STATE, **fields) == {"path": GO_TO_STATE, "fault": fields["fault"], **expected}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"fault": "drop"}, "path"),
        ({"path": "/_simulator/reset", "fault": "drop"}, "path"),
        ({"path": "api/m2m/v1/session/login", "fault": "drop"}, "path"),
        ({"path": LOGIN + "?x=1", "fault": "drop"}, "path"),
        ({"path": LOGIN}, "fault"),
        ({"path": LOGIN, "fault": "status-404"}, "fault"),
        ({"path": LOGIN, "fault": "drop", "times": 0}, "times"),
        ({"path": LOGIN, "fault": "drop", "times": "2"}, "times"),
        ({"path": LOGIN, "fault": "drop", "times": 1.5}, "times"),
        ({"path": LOGIN, "fault": "drop", "times": True}, "times"),
        ({"path": LOGIN, "fault": "timeout", "delay_s": -0.1}, "delay_s"),
        ({"path": LOGIN, "fault": "timeout", "delay_s": "1"}, "delay_s"),
        ({"path": LOGIN, "fault": "timeout", "delay": 0.3}, "delay"),
    ],
)
def test_a_bad_fault_is_refused_naming_the_field_and_nothing_is_queued(thingspace, body, field):
    response = thingspace.control("POST", "faults", json=body)
    assert assert_error(response, 400, FAILED + "InvalidRequest").startswith(field + ":")
    assert thingspace.control("DELETE", "faults").json() == {"cleared": 0}


def test_a_fault_body_must_be_a_json_object(thingspace):
    response = thingspace.control("POST", "faults", json=[{"path": LOGIN, "fault": "drop"}])
    assert assert_error(response, 400, FAILED + "InvalidRequest").startswith("body:")


def test_faults_on_a_path_come_first_registered_first_each_its_times_and_any_method(thingspace):
    headers = thingspace.session()
    inject(thingspace, CALLBACKS, "status-500", times=2)
    inject(thingspace, CALLBACKS, "status-429")
    inject(thingspace, LOGIN, "expired-bearer")
    registration = {"name": "StateService", "url": "http://127.0.0.1:1/callbacks"}
    answers = [
        thingspace.call("GET", CALLBACKS, headers),
        thingspace.call("POST", CALLBACKS, headers, json=registration),
        thingspace.call("GET", CALLBACKS, headers),
        thingspace.call("GET", CALLBACKS, headers),
    ]
    assert [a.status_code for a in answers] == [500, 500, 429, 200]
    # The faulted POST registered nothing.
    assert answers[-1].json() == []
    entries = recorded(thingspace, CALLBACKS)
    assert [(e["method"], e.get("fault"), e["status"]) for e in entries] == [
        ("GET", "status-500", 500),
        ("POST", "status-500", 500),
        ("GET", "status-429", 429),
        ("GET", None, 200),
    ]
    assert "fault" not in entries[-1]
    # A path's faults wait for that path alone.
    bearer = thingspace.bearer()
    assert_error(thingspace.log_in(bearer), 401, FAILED + "AccessToken.Expired")
    assert thingspace.log_in(bearer).status_code == 200


@pytest.mark.parametrize(("method", "path"), [("DELETE", "faults"), ("POST", "reset")])
def test_clearing_and_reset_forget_pending_faults(thingspace, method, path):
    inject(thingspace, TOKEN, "status-500", times=3)
    inject(thingspace, LOGIN, "drop")
    response = thingspace.control(method, path)
    assert response.status_code == 200
    if method == "DELETE":
        assert response.json() == {"cleared": 4}
    bearer = thingspace.bearer()
    assert thingspace.log_in(bearer).status_code == 200
    assert "fault" not in recorded(thingspace, LOGIN)[-1]


def test_concurrent_requests_take_each_fault_exactly_once(thingspace):
    bearer = thingspace.bearer()
    inject(thingspace, LOGIN, "status-500", times=20)
    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(lambda _: thingspace.log_in(bearer).status_code, range(30)))
    assert sorted(statuses) == [200] * 10 + [500] * 20
    assert sum(entry.get("fault") == "status-500" for entry in recorded(thingspace, LOGIN)) == 20


# -- Kinds that refuse: the action is not performed ----------------------------

ERROR_JSON = "application/json"


def _error_document(kind, status, code, message):
    """A kind answered with ThingSpace's error document."""
    return pytest.param(kind, status, ERROR_JSON, {"errorCode": FAILED + code, "errorMessage": message}, id=kind)


REFUSALS = [
    _error_document("status-429", 429, "RateLimitExceeded", "Too many requests"),
    _error_document("status-500", 500, "UnexpectedError", "Unexpected error"),
    pytest.param(
        "status-502-html", 502, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>", id="status-502-html"
    ),
    pytest.param("non-json", 200, "text/plain", "OK", id="non-json"),
    _error_document("expired-session", 401, "SessionToken.Expired", "SessionToken Expired"),
    _error_document("invalid-session", 401, "SessionToken.Invalid", "SessionToken Invalid"),
    _error_document("expired-bearer", 401, "AccessToken.Expired", "Access token expired or invalid"),
    _error_document("invalid-bearer", 401, "AccessToken.Invalid", "Access token invalid"),
    pytest.param("status-401-text", 401, "text/plain", "Unauthorized", id="status-401-text"),
]


@pytest.mark.parametrize(("kind", "status", "mimetype", "body"), REFUSALS)
def test_refusing_fault_answers_as_given_and_the_go_to_state_is_not_performed(
    thingspace, listener, simulator_log, kind, status, mimetype, body
):
    headers = thingspace.session()
    thingspace.register(headers, listener.url)
    inject(thingspace, GO_TO_STATE, kind)

    response = thingspace.go_to_state(headers, go_to_state_order())
    assert response.status_code == status
    assert response.headers["Content-Type"].split(";")[0] == mimetype
    assert (response.json() if isinstance(body, dict) else response.text) == body
    assert response.headers.get("Retry-After") == ("1" if kind == "status-429" else None)
    [entry] = recorded(thingspace, GO_TO_STATE)
    assert (entry["fault"], entry["status"]) == (kind, status)
    assert entry["response"] == (body if isinstance(body, dict) else None)
    assert entry["json"] == go_to_state_order()
    assert "goToState requestId=" not in simulator_log.text  # not performed, so nothing to call back

    # The fault is spent: the next goToState is accepted and called back. With
    # no callback delay, one for the refused request would have come first.
    accepted = thingspace.go_to_state(headers, go_to_state_order())
    assert accepted.status_code == 200
    assert [c["requestId"] for c in listener.wait_for_posts(1)] == [accepted.json()["requestId"]]
    assert "fault" not in recorded(thingspace, GO_TO_STATE)[1]


def test_a_delay_holds_back_any_faults_answer(thingspace):
    inject(thingspace, TOKEN, "status-500", delay_s=DELAY_S)
    started = time.monotonic()
    response = thingspace.token_response()
    assert time.monotonic() - started >= DELAY_S
    assert_error(response, 500, FAILED + "UnexpectedError")
    assert thingspace.token_response().status_code == 200


# -- timeout: performed, answered late -----------------------------------------


def test_timeout_performs_the_go_to_state_but_answers_late_and_sends_no_callbacks(thingspace, listener, simulator_log):
    headers = thingspace.session()
    thingspace.register(headers, listener.url)
    inject(thingspace, GO_TO_STATE, "timeout", delay_s=DELAY_S)

    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        requests.put(thingspace.url(GO_TO_STATE), json=go_to_state_order(), headers=headers, timeout=DELAY_S / 3)
    assert time.monotonic() - started < DELAY_S
    [entry] = answered_entries(thingspace, GO_TO_STATE, 1)
    assert (entry["fault"], entry["status"]) == ("timeout", 200)
    late_request_id = entry["response"]["requestId"]
    wait_for_log(simulator_log, f"goToState requestId={late_request_id} devices=1 account={ACCOUNT}")
    wait_for_log(simulator_log, "fault timeout on PUT " + GO_TO_STATE)

    # Later requests are answered at once, and only they are called back.
    started = time.monotonic()
    accepted = thingspace.go_to_state(headers, go_to_state_order())
    assert accepted.status_code == 200
    assert time.monotonic() - started < DELAY_S
    assert [c["requestId"] for c in listener.wait_for_posts(1)] == [accepted.json()["requestId"]]
    assert posts_after(listener, DELAY_S) == 1
    second = recorded(thingspace, GO_TO_STATE)[1]
    assert "fault" not in second and second["response"] == accepted.json()
    assert headers["VZ-M2M-Token"] not in simulator_log.text
    assert headers["Authorization"].split()[1] not in simulator_log.text


def test_a_patient_client_gets_the_late_answer(thingspace):
    inject(thingspace, TOKEN, "timeout", delay_s=DELAY_S)
    started = time.monotonic()
    response = thingspace.token_response()
    assert time.monotonic() - started >= DELAY_S
    assert response.status_code == 200
    # The token was issued: it works.
    bearer = {"Authorization": "Bearer " + response.json()["access_token"]}
    assert thingspace.log_in(bearer).status_code == 200
    # Token requests stay out of the record, faulted or not.
    assert recorded(thingspace, TOKEN) == []


# -- drop: the connection closes without an answer -----------------------------


def test_drop_closes_the_connection_without_a_single_byte(thingspace, listener, simulator_log):
    headers = thingspace.session()
    thingspace.register(headers, listener.url)
    inject(thingspace, GO_TO_STATE, "drop")
    simulator_log.set_level(logging.INFO, logger="werkzeug")

    body = json.dumps(go_to_state_order()).encode()
    assert raw_exchange(thingspace, "PUT", GO_TO_STATE, {**headers, "Content-Type": "application/json"}, body) == b""
    [entry] = recorded(thingspace, GO_TO_STATE)
    assert entry["fault"] == "drop"
    assert entry["json"] == go_to_state_order()
    assert (entry["status"], entry["response"]) == (None, None)
    assert posts_after(listener, DELAY_S) == 0
    assert "goToState requestId=" not in simulator_log.text
    # werkzeug neither tried to answer a 500 nor logged an error.
    assert [r.getMessage() for r in simulator_log.records if r.levelno >= logging.ERROR] == []

    accepted = thingspace.go_to_state(headers, go_to_state_order())
    assert accepted.status_code == 200
    assert [c["requestId"] for c in listener.wait_for_posts(1)] == [accepted.json()["requestId"]]


def test_drop_on_the_token_endpoint(thingspace):
    inject(thingspace, TOKEN, "drop", times=2)
    with pytest.raises(requests.ConnectionError):
        thingspace.token_response()
    assert raw_exchange(thingspace, "POST", TOKEN, {}, b"grant_type=client_credentials") == b""
    assert thingspace.token_response().status_code == 200
    assert recorded(thingspace, TOKEN) == []
