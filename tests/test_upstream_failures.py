"""Each way ThingSpace can fail, the fault a legacy client hears, and no goToState sent twice."""

import socket

import pytest
import requests
from lxml import etree

from gateway import ns
from tests import envelopes
from tests.inprocess import LOG_IN, InProcess, outcome

GO_TO_STATE = "/api/m2m/v1/devices/actions/goToState"
TOKEN = "/api/ts/v1/oauth2/token"
DEVICE = {"DeviceList": {"xml": envelopes.devices_xml([[("IMEI", "990000862471854")]])}}


@pytest.fixture
def fresh_gateway(new_gateway_app, upstream):
    """A gateway with no bearer cached yet and a short upstream timeout."""
    return InProcess(new_gateway_app(upstream.url, upstream_timeout_s="0.5"))


def inject(simulator, path, fault, times=1, delay_s=None):
    body = {"path": path, "fault": fault, "times": times, **({"delay_s": delay_s} if delay_s is not None else {})}
    requests.post(simulator.url + "/_simulator/faults", json=body, timeout=5).raise_for_status()


def call(gateway, service, body):
    if isinstance(gateway, InProcess):
        return outcome(*gateway.post(service, body))
    answer = requests.post(gateway.service_url(service), data=body, headers={"Content-Type": "text/xml"}, timeout=30)
    return outcome(answer.status_code, answer.content)


def log_in(gateway):
    if isinstance(gateway, InProcess):
        return gateway.log_in()
    status, code, text = call(gateway, "SessionService", LOG_IN)
    assert status == 200, text
    return etree.fromstring(text.encode()).findtext(f".//{{{ns.SESSION}}}SessionToken")


def go_to_state(gateway, token):
    return call(gateway, "StateService", envelopes.go_to_state({**envelopes.VALID, **DEVICE}, token=token))


@pytest.mark.parametrize(
    "fault, expected_code, expected_text",
    [
        ("timeout", "s:Server", "ThingSpace did not answer within 0.5 s"),
        ("drop", "s:Server", "ThingSpace closed the connection without answering"),
        ("status-429", "UnifiedWebService.REQUEST_FAILED.RateLimitExceeded", "Too many requests"),
        ("status-500", "UnifiedWebService.REQUEST_FAILED.UnexpectedError", "Unexpected error"),
        ("status-502-html", "s:Server", "ThingSpace answered HTTP 502 without its error document"),
        ("non-json", "s:Server", "ThingSpace answered HTTP 200 with a body that is not JSON"),
    ],
)
def test_a_failed_go_to_state_is_a_clear_fault_and_never_sent_twice(fresh_gateway, upstream, fault, expected_code, expected_text):
    token = log_in(fresh_gateway)
    inject(upstream, GO_TO_STATE, fault, delay_s=2.0 if fault == "timeout" else None)
    status, code, text = go_to_state(fresh_gateway, token)
    assert (status, code, text) == (500, expected_code, expected_text)
    (record,) = upstream.requests(GO_TO_STATE)
    assert record["fault"] == fault


# -- 401: the bearer or the session -----------------------------------------


@pytest.fixture
def in_process(gateway_app, upstream):
    return InProcess(gateway_app)


@pytest.mark.parametrize("fault", ["expired-bearer", "invalid-bearer", "status-401-text"])
def test_a_refused_bearer_is_renewed_once_and_the_call_goes_through(in_process, upstream, fault):
    token = log_in(in_process)
    inject(upstream, GO_TO_STATE, fault)
    status, code, _ = go_to_state(in_process, token)
    assert (status, code) == (200, None)
    first, second = upstream.requests(GO_TO_STATE)
    assert first["fault"] == fault and "fault" not in second
    assert first["headers"]["Authorization"] != second["headers"]["Authorization"]


@pytest.mark.parametrize("fault", ["expired-session", "invalid-session"])
def test_a_refused_session_is_the_legacy_expiry_after_exactly_one_go_to_state(in_process, upstream, fault):
    token = log_in(in_process)
    inject(upstream, GO_TO_STATE, fault)
    status, code, text = go_to_state(in_process, token)
    suffix = fault.split("-")[0].capitalize()  # Expired, Invalid
    assert (status, code, text) == (500, f"UnifiedWebService.REQUEST_FAILED.SessionToken.{suffix}", "The session has expired.")
    (record,) = upstream.requests(GO_TO_STATE)
    assert (record["fault"], record["status"]) == (fault, 401)


def test_a_session_thingspace_does_not_know_is_refused_once_with_401(in_process, upstream):
    # No injection: the simulator's own answer to a token it never issued.
    status, code, text = go_to_state(in_process, "not-a-session-it-issued")
    assert (status, code, text) == (500, "UnifiedWebService.REQUEST_FAILED.SessionToken.Invalid", "The session has expired.")
    (record,) = upstream.requests(GO_TO_STATE)
    assert record["status"] == 401


def test_a_bearer_refused_twice_is_not_renewed_a_second_time(fresh_gateway, upstream):
    token = log_in(fresh_gateway)
    inject(upstream, GO_TO_STATE, "expired-bearer", times=2)
    status, code, text = go_to_state(fresh_gateway, token)
    assert (status, code, text) == (500, "UnifiedWebService.REQUEST_FAILED.AccessToken.Expired", "Access token expired or invalid")
    assert len(upstream.requests(GO_TO_STATE)) == 2


@pytest.mark.parametrize(
    "fault, expected_text",
    [
        ("drop", "ThingSpace closed the connection without answering"),
        ("timeout", "ThingSpace did not answer within 0.5 s"),
        ("status-502-html", "ThingSpace refused the gateway's OAuth client credentials (HTTP 502); check [upstream] oauth_client_id and oauth_client_secret"),
    ],
)
def test_a_failing_token_endpoint_is_a_server_fault_and_no_login_is_tried(fresh_gateway, upstream, fault, expected_text):
    inject(upstream, TOKEN, fault, delay_s=2.0 if fault == "timeout" else None)
    assert call(fresh_gateway, "SessionService", LOG_IN) == (500, "s:Server", expected_text)
    assert upstream.requests("/api/m2m/v1/session/login") == []


def test_an_upstream_refusing_connections_is_a_server_fault(new_gateway_app):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening: refused
        gateway = InProcess(new_gateway_app(url))
        body = envelopes.go_to_state({**envelopes.VALID, **DEVICE})
        assert call(gateway, "StateService", body) == (500, "s:Server", "ThingSpace could not be reached (connection refused)")
