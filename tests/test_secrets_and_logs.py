"""Secrets never reach a log, a fault or an error page; a flood of bad requests does not flood the log."""

import json
import time

import pytest
import requests
import zeep

from gateway import ns
from tests import envelopes
from tests.conftest import Gateway

pytestmark = pytest.mark.process

ACCOUNT = "0000123456-00001"
OAUTH_SECRET = "oauth-secret-7f3a91"
CALLBACK_PASSWORD = "callback-pass-52be0c"
LISTENER_PASSWORD = "listener-pass-a41d77"
USER_PASSWORD = "demo-password"


@pytest.fixture
def gateway_with_secrets(tmp_path, tmp_path_factory):
    from tests.conftest import Simulator

    simulator = Simulator(tmp_path_factory.mktemp("secret-sim"), "--client-secret", OAUTH_SECRET).start()
    gateway = Gateway(
        tmp_path, simulator.url,
        upstream_oauth_client_secret=OAUTH_SECRET,
        callbacks_username="gw", callbacks_password=CALLBACK_PASSWORD,
        callbacks_backoff_s="0.1", logging_format="json",
    ).start()
    yield gateway, simulator
    gateway.stop()
    simulator.stop()


def log_in_envelope(password):
    return envelopes.envelope(
        "", f'<v2:LogIn><v2:Input xmlns:a="{ns.SESSION}"><a:Username>demo</a:Username><a:Password>{password}</a:Password></v2:Input></v2:LogIn>'
    ).encode()


def test_no_secret_reaches_a_log_line_a_fault_or_an_error_page(gateway_with_secrets, listener):
    gateway, simulator = gateway_with_secrets
    answers = []

    def post(service, body, **headers):
        answer = requests.post(gateway.service_url(service), data=body, headers={"Content-Type": "text/xml", **headers}, timeout=30)
        answers.append(answer.text)
        return answer

    token = zeep.Client(gateway.service_url("SessionService") + "?wsdl").service.LogIn(
        Input={"Username": "demo", "Password": USER_PASSWORD}
    )
    zeep.Client(gateway.service_url("CallbackRegistrationService") + "?wsdl").service.RegisterCallback(
        Input={"AccountName": ACCOUNT, "ServiceName": "StateService", "Url": listener.url,
               "Username": "legacy", "Password": LISTENER_PASSWORD},
        _soapheaders={"token": token},
    )
    device = {"DeviceList": {"xml": envelopes.devices_xml([[("IMEI", "990000862471854")]])}}
    post("StateService", envelopes.go_to_state({**envelopes.VALID, **device}, token=token))
    listener.wait_for(1)
    # Refused requests that carry secrets: their excerpts are logged.
    post("SessionService", log_in_envelope(USER_PASSWORD).replace(b"</a:Password>", b"</a:Password><a:Extra/>"))
    post("SessionService", log_in_envelope("wrong-" + USER_PASSWORD))
    post("StateService", envelopes.go_to_state({**envelopes.VALID, **device, "SkuNumber": "S" * 30}, token=token))
    post("StateService", envelopes.go_to_state({**envelopes.VALID}, token=token).replace(b"<s:Body>", b"<s:Body><x/>"))
    wrong = {"username": "gw", "password": CALLBACK_PASSWORD + "x", "requestId": "r", "deviceIds": [], "status": "x"}
    answers.append(requests.post(f"{gateway.url}/callbacks/thingspace/{ACCOUNT}/StateService", json=wrong, timeout=10).text)
    answers.append(requests.get(f"{gateway.url}/nowhere?password={USER_PASSWORD}", timeout=10).text)
    time.sleep(0.5)

    secrets = [OAUTH_SECRET, CALLBACK_PASSWORD, LISTENER_PASSWORD, USER_PASSWORD, token]
    log = gateway.log()
    assert "LogIn refused" in log, "the refusal was logged at all"
    for secret in secrets:
        assert secret not in log, f"{secret!r} is in the gateway's log"
        assert not [a for a in answers if secret in a], f"{secret!r} is in a response"
    for line in log.splitlines():
        json.loads(line)  # JSON logging: one object per line, every line


def test_a_flood_of_bad_requests_does_not_flood_the_log(gateway_with_secrets):
    gateway, _ = gateway_with_secrets
    junk = b"<s:Envelope>" + b"x" * 50_000
    deadline = time.monotonic() + 60
    for _ in range(300):
        requests.post(gateway.service_url("StateService"), data=junk, headers={"Content-Type": "text/xml"}, timeout=10)
        assert time.monotonic() < deadline
    lines = [json.loads(line) for line in gateway.log().splitlines()]
    refused = [line for line in lines if "refused" in line["message"]]
    assert 0 < len(refused) < 60, f"{len(refused)} lines for 300 bad requests"
    assert any("similar lines suppressed" in line["message"] for line in lines)
    assert max(len(line["message"]) for line in refused) < 1000, "a body went into the log whole"
    assert all(line["request_id"] != "-" for line in refused)
