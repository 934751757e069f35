"""The embedded ThingSpace simulator, driven over real HTTP on 127.0.0.1.

Each test starts its own simulator (werkzeug's threaded server on a free port)
and, where callbacks matter, a stdlib HTTP listener that records what arrives.
"""

import copy
import json
import logging
import re
import subprocess
import sys
import time
import uuid

import pytest
import requests

from gateway.simulator import SimulatorSettings
from tests.conftest import InProcessSimulator, Listener, free_port

WAIT_S = 10
ACCOUNT = "0000123456-00001"
FAILED = "UnifiedWebService.REQUEST_FAILED."
DEVICE = {"deviceIds": [{"kind": "imei", "id": "990000862471854"}]}


def go_to_state_order(**fields):
    order = {
        "serviceName": "TestService",
        "stateName": "new active",
        "servicePlan": "87641",
        "mdnZipCode": "94203",
        "devices": [copy.deepcopy(DEVICE)],
    }
    order.update(fields)
    return order


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    document = response.json()
    assert document["errorCode"] == code
    assert document["errorMessage"]
    return document["errorMessage"]


class ThingSpace:
    """A client of one running simulator."""

    def __init__(self, base_url, settings):
        self.base_url, self.settings = base_url, settings

    def url(self, path):
        return self.base_url + path

    def token_response(self, client=None, grant_type="client_credentials"):
        return requests.post(
            self.url("/api/ts/v1/oauth2/token"),
            auth=client or (self.settings.client_id, self.settings.client_secret),
            data={"grant_type": grant_type},
            timeout=WAIT_S,
        )

    def bearer(self):
        return {"Authorization": "Bearer " + self.token_response().json()["access_token"]}

    def log_in(self, bearer, username="demo", password="demo-password"):
        return requests.post(
            self.url("/api/m2m/v1/session/login"),
            json={"username": username, "password": password},
            headers=bearer,
            timeout=WAIT_S,
        )

    def session(self):
        """Headers of a logged-in M2M call: the bearer and a fresh session token."""
        bearer = self.bearer()
        return {**bearer, "VZ-M2M-Token": self.log_in(bearer).json()["sessionToken"]}

    def call(self, method, path, headers, **kwargs):
        return requests.request(method, self.url(path), headers=headers, timeout=WAIT_S, **kwargs)

    def go_to_state(self, headers, order):
        return self.call("PUT", "/api/m2m/v1/devices/actions/goToState", headers, json=order)

    def register(self, headers, url, name="StateService", account=ACCOUNT, **credentials):
        registration = {"name": name, "url": url, **credentials}
        return self.call("POST", f"/api/m2m/v1/callbacks/{account}", headers, json=registration)

    def control(self, method, path, **kwargs):
        return requests.request(method, self.url("/_simulator/" + path), timeout=WAIT_S, **kwargs)


@pytest.fixture
def start_simulator():
    running = []

    def start(**overrides):
        running.append(InProcessSimulator(**{"callback_delay_s": 0.0, **overrides}).start())
        return ThingSpace(running[-1].url, running[-1].app.settings)

    yield start
    for simulator in running:
        simulator.stop()


@pytest.fixture
def thingspace(start_simulator):
    return start_simulator()


@pytest.fixture
def listeners():
    started = []

    def start(statuses=()):
        started.append(Listener(statuses))
        return started[-1]

    yield start
    for listener in started:
        listener.close()


@pytest.fixture
def listener(listeners):
    return listeners()


@pytest.fixture
def simulator_log(caplog):
    caplog.set_level(logging.INFO, logger="gateway.simulator")
    return caplog


def wait_for_log(caplog, text):
    """Wait for a log line: a callback is logged only after its listener answered."""
    deadline = time.monotonic() + WAIT_S
    while text not in caplog.text:
        assert time.monotonic() < deadline, f"no log line with {text!r}"
        time.sleep(0.05)


# -- OAuth ---------------------------------------------------------------------


def test_token_is_issued_for_client_credentials(thingspace):
    response = thingspace.token_response()
    assert response.status_code == 200
    document = response.json()
    assert document["token_type"] == "bearer"
    assert document["expires_in"] == 3600
    assert document["access_token"] and document["scope"]
    assert thingspace.token_response().json()["access_token"] != document["access_token"]


@pytest.mark.parametrize(
    ("client", "grant_type", "status", "error"),
    [
        (("demo-client", "wrong-secret"), "client_credentials", 401, "invalid_client"),
        (("someone-else", "demo-secret"), "client_credentials", 401, "invalid_client"),
        (None, "password", 400, "unsupported_grant_type"),
        (None, "", 400, "unsupported_grant_type"),
    ],
)
def test_token_is_refused(thingspace, client, grant_type, status, error):
    response = thingspace.token_response(client, grant_type)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json()["error_description"]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-a-token-it-issued", "Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ="],
)
def test_m2m_calls_need_a_bearer_token_it_issued(thingspace, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = thingspace.log_in(headers)
    message = assert_error(response, 401, FAILED + "AccessToken.Expired")
    assert message == "Access token expired or invalid"


def test_expired_token_is_refused_with_the_same_code(start_simulator):
    thingspace = start_simulator(token_lifetime_s=0.3)
    bearer = thingspace.bearer()
    assert thingspace.log_in(bearer).status_code == 200
    time.sleep(0.4)
    assert_error(thingspace.log_in(bearer), 401, FAILED + "AccessToken.Expired")


# -- Session -------------------------------------------------------------------


def test_login_returns_a_uuid4_session_token(thingspace):
    response = thingspace.log_in(thingspace.bearer())
    assert response.status_code == 200
    assert uuid.UUID(response.json()["sessionToken"]).version == 4


@pytest.mark.parametrize(("username", "password"), [("demo", "wrong"), ("nobody", "demo-password")])
def test_bad_login_is_invalid_credentials(thingspace, username, password):
    response = thingspace.log_in(thingspace.bearer(), username, password)
    message = assert_error(response, 400, FAILED + "InvalidCredentials")
    assert message == "Invalid username or password"


def test_five_failed_logins_in_a_row_lock_the_user(thingspace):
    bearer = thingspace.bearer()
    for _ in range(5):
        assert_error(thingspace.log_in(bearer, password="wrong"), 400, FAILED + "InvalidCredentials")
    assert_error(thingspace.log_in(bearer), 400, FAILED + "AccountLocked")


def test_a_successful_login_resets_the_failure_count(thingspace):
    bearer = thingspace.bearer()
    for _ in range(2):
        for _ in range(4):
            assert_error(thingspace.log_in(bearer, password="wrong"), 400, FAILED + "InvalidCredentials")
        assert thingspace.log_in(bearer).status_code == 200


def test_logout_echoes_the_token_and_ends_the_session(thingspace):
    headers = thingspace.session()
    response = thingspace.call("POST", "/api/m2m/v1/session/logout", headers)
    assert response.status_code == 200
    assert response.json() == {"sessionToken": headers["VZ-M2M-Token"]}
    assert_error(thingspace.go_to_state(headers, go_to_state_order()), 401, FAILED + "SessionToken.Invalid")


# ids: the same test names in every pytest-xdist worker, whatever token each draws.
@pytest.mark.parametrize("session_token", [None, str(uuid.uuid4())], ids=["none", "unknown"])
def test_m2m_calls_need_a_known_session(thingspace, session_token):
    headers = thingspace.bearer()
    if session_token:
        headers["VZ-M2M-Token"] = session_token
    assert_error(thingspace.go_to_state(headers, go_to_state_order()), 401, FAILED + "SessionToken.Invalid")


def test_session_expires_when_idle_and_each_use_refreshes_it(start_simulator):
    thingspace = start_simulator(session_idle_s=0.5)
    headers = thingspace.session()
    # Three uses 0.3 s apart outlive the idle limit only because each refreshes it.
    for _ in range(3):
        time.sleep(0.3)
        assert thingspace.call("GET", f"/api/m2m/v1/callbacks/{ACCOUNT}", headers).status_code == 200
    time.sleep(0.7)
    response = thingspace.call("GET", f"/api/m2m/v1/callbacks/{ACCOUNT}", headers)
    assert assert_error(response, 401, FAILED + "SessionToken.Expired") == "SessionToken Expired"


# -- Callback registrations ----------------------------------------------------


def test_callback_registrations_are_listed_replaced_and_removed(thingspace):
    headers = thingspace.session()
    path = f"/api/m2m/v1/callbacks/{ACCOUNT}"
    response = thingspace.register(headers, "http://127.0.0.1:1/old", username="u", password="secret")
    assert response.status_code == 200
    assert response.json() == {"accountName": ACCOUNT, "name": "StateService"}
    thingspace.register(headers, "http://127.0.0.1:1/new", username="u", password="secret")
    thingspace.register(headers, "http://127.0.0.1:1/sms", name="SMSDelivery")
    assert thingspace.call("GET", path, headers).json() == [
        {"accountName": ACCOUNT, "name": "StateService", "url": "http://127.0.0.1:1/new"},
        {"accountName": ACCOUNT, "name": "SMSDelivery", "url": "http://127.0.0.1:1/sms"},
    ]
    response = thingspace.call("DELETE", f"{path}/name/SMSDelivery", headers)
    assert response.status_code == 200
    assert response.json() == {"accountName": ACCOUNT, "name": "SMSDelivery"}
    assert [r["name"] for r in thingspace.call("GET", path, headers).json()] == ["StateService"]
    assert_error(thingspace.call("DELETE", f"{path}/name/SMSDelivery", headers), 400, FAILED + "CallbackNotFound")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/m2m/v1/callbacks/0000999999-00001", None),
        ("POST", "/api/m2m/v1/callbacks/0000999999-00001", {"name": "StateService", "url": "http://127.0.0.1:1/"}),
        ("DELETE", "/api/m2m/v1/callbacks/0000999999-00001/name/StateService", None),
    ],
)
def test_callbacks_of_another_account_are_refused(thingspace, method, path, body):
    assert_error(thingspace.call(method, path, thingspace.session(), json=body), 400, FAILED + "AccountNotFound")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://127.0.0.1:1/"}, "name"),
        ({"name": "StateService"}, "url"),
        ({"name": "StateService", "url": "ftp://127.0.0.1/"}, "url"),
    ],
)
def test_callback_registration_needs_a_name_and_an_http_url(thingspace, body, field):
    response = thingspace.call("POST", f"/api/m2m/v1/callbacks/{ACCOUNT}", thingspace.session(), json=body)
    assert assert_error(response, 400, FAILED + "InvalidRequest").startswith(field)


# -- goToState validation ------------------------------------------------------


def _set(**fields):
    return lambda order: order.update(fields)


def _drop(key):
    return lambda order: order.pop(key)


def _with_device(**fields):
    return lambda order: order["devices"][0].update(fields)


INVALID_ORDERS = [
    pytest.param(_drop("serviceName"), "serviceName", id="no serviceName"),
    pytest.param(_drop("stateName"), "stateName", id="no stateName"),
    pytest.param(_drop("servicePlan"), "servicePlan", id="no servicePlan"),
    pytest.param(_drop("mdnZipCode"), "mdnZipCode", id="no mdnZipCode"),
    pytest.param(_set(stateName=""), "stateName", id="empty stateName"),
    pytest.param(_set(serviceName=7), "serviceName", id="serviceName not a string"),
    pytest.param(_drop("devices"), "devices", id="neither devices nor filter"),
    pytest.param(_set(filter={"accountName": ACCOUNT}), "devices", id="both devices and filter"),
    pytest.param(_set(devices=[]), "devices", id="no devices"),
    pytest.param(_set(devices=[DEVICE] * 10_001), "devices", id="10001 devices"),
    pytest.param(_set(devices=[{}]), "devices[0].deviceIds", id="device without deviceIds"),
    pytest.param(_with_device(deviceIds=[]), "devices[0].deviceIds", id="empty deviceIds"),
    pytest.param(_with_device(deviceIds=[{"kind": "IMEI", "id": "1"}]), "devices[0].deviceIds[0].kind", id="IMEI"),
    pytest.param(_with_device(deviceIds=[{"kind": "serial", "id": "1"}]), "devices[0].deviceIds[0].kind", id="serial"),
    pytest.param(_with_device(deviceIds=[{"kind": "imei", "id": ""}]), "devices[0].deviceIds[0].id", id="empty id"),
    pytest.param(_with_device(ipAddress="0.1.2.3"), "devices[0].ipAddress", id="ipAddress first octet 0"),
    pytest.param(_with_device(ipAddress="10.0.0.256"), "devices[0].ipAddress", id="ipAddress octet 256"),
    pytest.param(_with_device(ipAddress="10.0.0"), "devices[0].ipAddress", id="ipAddress three octets"),
    pytest.param(_set(customFields=[{"key": "CustomField6", "value": ""}]), "customFields[0].key", id="CustomField6"),
    pytest.param(_set(customFields=[{"key": "CustomField1"}]), "customFields[0].value", id="custom field no value"),
    pytest.param(_set(publicIpRestriction="restricted"), "publicIpRestriction", id="publicIpRestriction"),
    pytest.param(_set(skuNumber="S" * 21), "skuNumber", id="skuNumber 21 chars"),
    pytest.param(_set(colour="blue"), "colour", id="unknown key"),
]


@pytest.mark.parametrize(("break_order", "field"), INVALID_ORDERS)
def test_invalid_go_to_state_is_refused_naming_the_field(thingspace, break_order, field):
    order = go_to_state_order()
    break_order(order)
    message = assert_error(thingspace.go_to_state(thingspace.session(), order), 400, FAILED + "InvalidRequest")
    assert message.startswith(field + ":"), message


@pytest.mark.parametrize(
    ("device_filter", "field"),
    [
        ({"servicePlan": "87641"}, "filter.servicePlan"),
        ({"customFields": [{"key": "CustomField1", "value": "1"}]}, "filter.customFields"),
        ({"accountName": ACCOUNT, "customFields": [{"key": "Colour", "value": "1"}]}, "filter.customFields[0].key"),
        ({"deviceName": "x"}, "filter.deviceName"),
        ({}, "filter"),
    ],
)
def test_invalid_filter_is_refused_naming_the_field(thingspace, device_filter, field):
    order = go_to_state_order(filter=device_filter)
    del order["devices"]
    message = assert_error(thingspace.go_to_state(thingspace.session(), order), 400, FAILED + "InvalidRequest")
    assert message.startswith(field + ":"), message


def test_filter_on_another_account_is_refused(thingspace):
    order = go_to_state_order(filter={"accountName": "0000999999-00001"})
    del order["devices"]
    assert_error(thingspace.go_to_state(thingspace.session(), order), 400, FAILED + "AccountNotFound")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, id="malformed JSON"),
        pytest.param({"data": b"[]", "headers": {"Content-Type": "application/json"}}, id="not an object"),
        pytest.param(
            {"data": json.dumps(go_to_state_order()), "headers": {"Content-Type": "text/plain"}}, id="typed text/plain"
        ),
    ],
)
def test_go_to_state_body_must_be_a_json_object_typed_as_json(thingspace, body):
    headers = {**thingspace.session(), **body["headers"]}
    response = thingspace.call("PUT", "/api/m2m/v1/devices/actions/goToState", headers, data=body["data"])
    assert_error(response, 400, FAILED + "InvalidRequest")


def test_go_to_state_accepts_the_limits(thingspace):
    kinds = ["esn", "iccid", "imei", "mdn", "meid", "msisdn", "min", "eid", "imsi"] * 1111
    devices = [{"deviceIds": [{"kind": kind, "id": str(n)}]} for n, kind in enumerate(kinds)]
    devices.append({"deviceIds": [{"kind": "imei", "id": "last"}], "ipAddress": "255.255.255.255"})
    order = go_to_state_order(
        devices=devices,
        skuNumber="S" * 20,
        publicIpRestriction="R",
        customFields=[{"key": f"CustomField{n}", "value": ""} for n in range(1, 6)],
        carrierIpPoolName="pool",
        groupName="4G West",
    )
    assert len(devices) == 10_000
    response = thingspace.go_to_state(thingspace.session(), order)
    assert response.status_code == 200, response.text
    assert uuid.UUID(response.json()["requestId"]).version == 4


# -- goToState callbacks -------------------------------------------------------


def test_go_to_state_sends_one_callback_per_device_shaped_as_the_document(thingspace, listener, simulator_log):
    headers = thingspace.session()
    thingspace.register(headers, listener.url, username="listener-user", password="listener-secret")
    with_mdn = {
        "deviceIds": [{"kind": "iccid", "id": "89148000000800000001"}, {"kind": "mdn", "id": "5551234567"}],
        "ipAddress": "10.1.2.3",
    }
    without_mdn = {
        "deviceIds": [{"kind": "imei", "id": "990000862471854"}, {"kind": "iccid", "id": "89148000000800000002"}]
    }
    response = thingspace.go_to_state(headers, go_to_state_order(devices=[with_mdn, without_mdn]))
    request_id = response.json()["requestId"]

    callbacks = {c["deviceIds"][0]["id"]: c for c in listener.wait_for_posts(2)}
    assert callbacks["89148000000800000001"] == {
        "username": "listener-user",
        "password": "listener-secret",
        "requestId": request_id,
        "deviceIds": [{"kind": "iccid", "id": "89148000000800000001"}],
        "deviceResponse": {
            "goToStateResponse": {
                "deviceIds": with_mdn["deviceIds"],
                "ipAddress": "10.1.2.3",
                "servicePlan": "87641",
                "accountName": ACCOUNT,
                "serviceName": "TestService",
                "stateName": "new active",
                "smsrOid": "",
                "subscriptionTypeCode": "",
                "subscriptionTypeDesc": "",
                "stageStateChangeReasonCode": "",
                "stageStateChangeReasonDesc": "",
            }
        },
        "status": "Success",
        "callbackCount": 1,
        "maxCallbackThreshold": 4,
    }
    simulated = callbacks["990000862471854"]["deviceResponse"]["goToStateResponse"]
    *sent, mdn = simulated["deviceIds"]
    assert sent == without_mdn["deviceIds"]
    assert mdn["kind"] == "mdn" and re.fullmatch(r"[0-9]{10}", mdn["id"])
    assert re.fullmatch(r"10\.[0-9]+\.[0-9]+\.[0-9]+", simulated["ipAddress"])

    assert f"goToState requestId={request_id} devices=2 account={ACCOUNT}" in simulator_log.text
    for device in callbacks:
        line = f"callback requestId={request_id} device={device} status=Success -> {listener.url} HTTP 200"
        wait_for_log(simulator_log, line)
    assert "listener-secret" not in simulator_log.text and headers["VZ-M2M-Token"] not in simulator_log.text


def test_simulated_mdn_and_ip_address_are_deterministic(thingspace, listener):
    headers = thingspace.session()
    thingspace.register(headers, listener.url)
    for _ in range(2):
        thingspace.go_to_state(headers, go_to_state_order())
    first, second = (c["deviceResponse"]["goToStateResponse"] for c in listener.wait_for_posts(2))
    assert first["deviceIds"] == second["deviceIds"]
    assert first["ipAddress"] == second["ipAddress"]


def test_go_to_state_answers_before_any_callback_is_sent(start_simulator, listener):
    thingspace = start_simulator(callback_delay_s=0.5)
    headers = thingspace.session()
    thingspace.register(headers, listener.url)
    started = time.monotonic()
    response = thingspace.go_to_state(headers, go_to_state_order())
    assert response.status_code == 200
    assert time.monotonic() - started < 0.5
    assert listener.all() == []
    assert listener.wait_for_posts(1)[0]["requestId"] == response.json()["requestId"]


def test_filter_request_reaches_two_simulated_devices_in_the_account(thingspace, listener):
    headers = thingspace.session()
    thingspace.register(headers, listener.url)
    order = go_to_state_order(filter={"accountName": ACCOUNT, "groupName": "4G West", "servicePlan": "old"})
    del order["devices"]
    first, second = (thingspace.go_to_state(headers, order).json()["requestId"] for _ in range(2))
    callbacks = listener.wait_for_posts(4)
    devices_of = {
        request_id: sorted(c["deviceIds"][0]["id"] for c in callbacks if c["requestId"] == request_id)
        for request_id in (first, second)
    }
    assert len(set(devices_of[first])) == 2
    assert devices_of[first] == devices_of[second]
    assert {c["deviceResponse"]["goToStateResponse"]["accountName"] for c in callbacks} == {ACCOUNT}


def test_device_marked_failing_reports_failed_with_the_reason(thingspace, listener):
    headers = thingspace.session()
    thingspace.register(headers, listener.url)
    marked = thingspace.control(
        "POST", "failing-devices", json={"id": "89148000000800000009", "reasonCode": "SB", "reasonDesc": "Suspended"}
    )
    assert marked.status_code == 200
    failing = {
        "deviceIds": [{"kind": "imei", "id": "990000862471999"}, {"kind": "iccid", "id": "89148000000800000009"}]
    }
    thingspace.go_to_state(headers, go_to_state_order(devices=[DEVICE, failing]))
    callbacks = {c["deviceIds"][0]["id"]: c for c in listener.wait_for_posts(2)}
    failed = callbacks["990000862471999"]
    assert failed["status"] == "Failed"
    assert failed["deviceResponse"]["goToStateResponse"]["stageStateChangeReasonCode"] == "SB"
    assert failed["deviceResponse"]["goToStateResponse"]["stageStateChangeReasonDesc"] == "Suspended"
    assert callbacks["990000862471854"]["status"] == "Success"


def test_unacknowledged_callback_is_retried_up_to_the_threshold(start_simulator, listeners, simulator_log):
    thingspace = start_simulator(callback_max=3)
    listener = listeners(statuses=[500] * 10)
    headers = thingspace.session()
    thingspace.register(headers, listener.url)
    thingspace.go_to_state(headers, go_to_state_order())
    attempts = listener.wait_for_posts(3)
    assert [a["callbackCount"] for a in attempts] == [1, 2, 3]
    assert {a["maxCallbackThreshold"] for a in attempts} == {3}
    wait_for_log(simulator_log, "not acknowledged after 3 attempts: giving up")  # so nothing more is sent
    assert len(listener.all()) == 3


def test_retrying_stops_once_acknowledged(thingspace, listeners, simulator_log):
    listener = listeners(statuses=[503])
    headers = thingspace.session()
    thingspace.register(headers, listener.url)
    thingspace.go_to_state(headers, go_to_state_order())
    assert [a["callbackCount"] for a in listener.wait_for_posts(2)] == [1, 2]
    wait_for_log(simulator_log, f"-> {listener.url} HTTP 200")  # acknowledged: done with it
    assert len(listener.all()) == 2


def test_unreachable_listener_is_retried_then_given_up(start_simulator, simulator_log):
    thingspace = start_simulator(callback_max=2, callback_retry_s=0.1)
    dead_url = f"http://127.0.0.1:{free_port()}/callbacks"
    headers = thingspace.session()
    thingspace.register(headers, dead_url.replace("//", "//user:url-secret@"))
    thingspace.go_to_state(headers, go_to_state_order())
    wait_for_log(simulator_log, "not acknowledged after 2 attempts")
    attempts = [r.getMessage() for r in simulator_log.records if r.levelno == logging.INFO and "callback " in r.msg]
    assert [a.endswith(f"-> {dead_url} failed (ConnectionError)") for a in attempts] == [True, True]
    assert "url-secret" not in simulator_log.text


def test_callbacks_without_a_registered_listener_are_dropped_with_a_warning(thingspace, simulator_log):
    request_id = thingspace.go_to_state(thingspace.session(), go_to_state_order()).json()["requestId"]
    warnings = [r.getMessage() for r in simulator_log.records if r.levelno == logging.WARNING]
    assert any(request_id in message and "dropping" in message for message in warnings)


# -- Control API and generic errors --------------------------------------------


def test_m2m_requests_are_recorded_in_order_with_their_answers(thingspace):
    headers = thingspace.session()
    request_id = thingspace.go_to_state(headers, go_to_state_order()).json()["requestId"]
    thingspace.call("GET", f"/api/m2m/v1/callbacks/{ACCOUNT}", {"VZ-M2M-Token": headers["VZ-M2M-Token"]})
    recorded = thingspace.control("GET", "requests").json()
    assert recorded == [
        {
            "method": "POST",
            "path": "/api/m2m/v1/session/login",
            "headers": {"Authorization": headers["Authorization"], "Content-Type": "application/json"},
            "json": {"username": "demo", "password": "demo-password"},
            "status": 200,
            "response": {"sessionToken": headers["VZ-M2M-Token"]},
        },
        {
            "method": "PUT",
            "path": "/api/m2m/v1/devices/actions/goToState",
            "headers": {**headers, "Content-Type": "application/json"},
            "json": go_to_state_order(),
            "status": 200,
            "response": {"requestId": request_id},
        },
        {
            "method": "GET",
            "path": f"/api/m2m/v1/callbacks/{ACCOUNT}",
            "headers": {"VZ-M2M-Token": headers["VZ-M2M-Token"]},
            "json": None,
            "status": 401,
            "response": {"errorCode": FAILED + "AccessToken.Expired", "errorMessage": "Access token expired or invalid"},
        },
    ]


def test_reset_forgets_requests_sessions_lockouts_and_failing_marks_but_not_registrations(thingspace, listener):
    old_session = thingspace.session()
    thingspace.register(old_session, listener.url)
    mark = {"id": DEVICE["deviceIds"][0]["id"], "reasonCode": "X", "reasonDesc": "x"}
    thingspace.control("POST", "failing-devices", json=mark)
    for _ in range(5):
        thingspace.log_in(thingspace.bearer(), password="wrong")

    assert thingspace.control("POST", "reset").status_code == 200
    assert thingspace.control("GET", "requests").json() == []
    assert_error(thingspace.go_to_state(old_session, go_to_state_order()), 401, FAILED + "SessionToken.Invalid")
    thingspace.go_to_state(thingspace.session(), go_to_state_order())
    assert listener.wait_for_posts(1)[0]["status"] == "Success"


def test_failing_mark_needs_its_fields(thingspace):
    response = thingspace.control("POST", "failing-devices", json={"id": "1", "reasonCode": "X"})
    assert assert_error(response, 400, FAILED + "InvalidRequest").startswith("reasonDesc")


def test_unknown_path_and_wrong_method_get_error_documents(thingspace):
    assert_error(requests.get(thingspace.url("/api/m2m/v1/nothing"), timeout=WAIT_S), 404, FAILED + "NotFound")
    assert_error(requests.get(thingspace.url("/"), timeout=WAIT_S), 404, FAILED + "NotFound")
    response = requests.get(thingspace.url("/api/m2m/v1/devices/actions/goToState"), timeout=WAIT_S)
    assert_error(response, 405, FAILED + "MethodNotAllowed")
    assert "PUT" in response.headers["Allow"]


def test_malformed_json_gets_an_error_document(thingspace):
    response = requests.post(
        thingspace.url("/api/m2m/v1/session/login"),
        data=b'{"username": ',
        headers={**thingspace.bearer(), "Content-Type": "application/json"},
        timeout=WAIT_S,
    )
    assert_error(response, 400, FAILED + "InvalidRequest")
    assert "Traceback" not in response.text


# -- serve() -------------------------------------------------------------------


def test_serve_logs_its_address_and_each_go_to_state_but_no_access_lines():
    port = free_port()
    script = (
        "import logging; from gateway.simulator import serve, SimulatorSettings; "
        "logging.basicConfig(level=logging.INFO, format='%(message)s'); "
        f"serve(SimulatorSettings(port={port}))"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        thingspace = ThingSpace(f"http://127.0.0.1:{port}", SimulatorSettings())
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                headers = thingspace.session()
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.05)
        request_id = thingspace.go_to_state(headers, go_to_state_order()).json()["requestId"]
    finally:
        process.terminate()
        _, log_text = process.communicate(timeout=WAIT_S)
    assert f"simulator listening on http://127.0.0.1:{port}" in log_text
    assert f"goToState requestId={request_id} devices=1 account={ACCOUNT}" in log_text
    assert "HTTP/1.1" not in log_text
    assert "demo-password" not in log_text
