"""Each way ThingSpace can fail, the fault a legacy client hears, and no goToState sent twice."""

import socket

import pytest
import requests
from lxml import etree

from gateway import ns
from tests import envelopes
from tests.conftest import Gateway

GO_TO_STATE = "/api/m2m/v1/devices/actions/goToState"
TOKEN = "/api/ts/v1/oauth2/token"
DEVICE = {"DeviceList": {"xml": envelopes.devices_xml([[("IMEI", "990000862471854")]])}}


@pytest.fixture
def fresh_gateway(tmp_path, upstream):
    """A gateway with no bearer cached yet and a short upstream timeout."""
    process = Gateway(tmp_path, upstream.url, upstream_timeout_s="0.5").start()
    yield process
    process.stop()


def inject(simulator, path, fault, times=1, delay_s=None):
    body = {"path": path, "fault": fault, "times": times, **({"delay_s": delay_s} if delay_s is not None else {})}
    requests.post(simulator.url + "/_simulator/faults", json=body, timeout=5).raise_for_status()


def call(gateway, service, body):
    answer = requests.post(gateway.service_url(service), data=body, headers={"Content-Type": "text/xml"}, timeout=30)
    root = etree.fromstring(answer.content)
    fault = root.find(f"{{{ns.SOAP_ENV}}}Body/{{{ns.SOAP_ENV}}}Fault")
    if fault is None:
        return answer.status_code, None, answer.text
    return answer.status_code, fault.findtext("faultcode"), fault.findtext("faultstring")


def log_in(gateway):
    body = envelopes.envelope(
        "", f'<v2:LogIn><v2:Input xmlns:a="{ns.SESSION}"><a:Username>demo</a:Username><a:Password>demo-password</a:Password></v2:Input></v2:LogIn>'
    ).encode()
    status, code, text = call(gateway, "SessionService", body)
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
        ("expired-session", "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired", "The session has expired."),
    ],
)
def test_a_failed_go_to_state_is_a_clear_fault_and_never_sent_twice(fresh_gateway, upstream, fault, expected_code, expected_text):
    token = log_in(fresh_gateway)
    inject(upstream, GO_TO_STATE, fault, delay_s=2.0 if fault == "timeout" else None)
    status, code, text = go_to_state(fresh_gateway, token)
    assert (status, code, text) == (500, expected_code, expected_text)
    (record,) = upstream.requests(GO_TO_STATE)
    assert record["fault"] == fault


def test_an_expired_bearer_is_renewed_once_and_the_call_goes_through(fresh_gateway, upstream):
    token = log_in(fresh_gateway)
    inject(upstream, GO_TO_STATE, "expired-bearer")
    status, code, _ = go_to_state(fresh_gateway, token)
    assert (status, code) == (200, None)
    first, second = upstream.requests(GO_TO_STATE)
    assert first["fault"] == "expired-bearer" and "fault" not in second
    assert first["headers"]["Authorization"] != second["headers"]["Authorization"]


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
    body = envelopes.envelope(
        "", f'<v2:LogIn><v2:Input xmlns:a="{ns.SESSION}"><a:Username>demo</a:Username><a:Password>demo-password</a:Password></v2:Input></v2:LogIn>'
    ).encode()
    assert call(fresh_gateway, "SessionService", body) == (500, "s:Server", expected_text)
    assert upstream.requests("/api/m2m/v1/session/login") == []


def test_an_upstream_refusing_connections_is_a_server_fault(tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening: refused
        process = Gateway(tmp_path, url).start()
        try:
            body = envelopes.go_to_state({**envelopes.VALID, **DEVICE})
            assert call(process, "StateService", body) == (500, "s:Server", "ThingSpace could not be reached (connection refused)")
        finally:
            process.stop()
