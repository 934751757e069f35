"""The callback bridge end to end: simulator → gateway → legacy listener, real processes."""

import concurrent.futures
import functools
import logging
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
import zeep
from lxml import etree

from gateway import ns
from gateway.callbacks import delivery
from tests.conftest import ROOT, Gateway, InProcessGateway, outbox_counts, wait_until_settled

ACCOUNT = "0000123456-00001"
THINGSPACE_USER, THINGSPACE_PASSWORD = "ts-user", "ts-secret-4d1f"
LEGACY_USER, LEGACY_PASSWORD = "legacy-user", "legacy-secret-9c2e"
V2 = {"v2": ns.V2, "s": ns.SOAP_ENV, "xsi": ns.XSI}


@pytest.fixture(autouse=True)
def quiet_zeep():
    logging.getLogger("zeep").setLevel(logging.ERROR)


def bridge(tmp_path, simulator, kind=InProcessGateway, **settings):
    """A gateway with known callback credentials and quick retries: in this process
    unless a test kills it (``kind=Gateway``)."""
    values = {
        "callbacks_username": THINGSPACE_USER,
        "callbacks_password": THINGSPACE_PASSWORD,
        "callbacks_backoff_s": "0.1",
        "callbacks_timeout_s": "1",
        "callbacks_max_attempts": "8",
        **settings,
    }
    return kind(tmp_path, simulator.url, **values)


@functools.lru_cache(maxsize=None)
def _client(wsdl_url):
    return zeep.Client(wsdl_url)


def soap(gateway, service):
    """A zeep client of ``service``, its WSDL fetched once per gateway URL."""
    return _client(gateway.service_url(service) + "?wsdl").service


def log_in(gateway):
    return soap(gateway, "SessionService").LogIn(Input={"Username": "demo", "Password": "demo-password"})


def register(gateway, listener_url):
    token = log_in(gateway)
    soap(gateway, "CallbackRegistrationService").RegisterCallback(
        Input={"AccountName": ACCOUNT, "ServiceName": "StateService", "Url": listener_url,
               "Username": LEGACY_USER, "Password": LEGACY_PASSWORD},
        _soapheaders={"token": token},
    )
    return token


def go_to_state(gateway, token, devices):
    return soap(gateway, "StateService").GoToState(
        Input={
            "DeviceList": {"DeviceIdentifierCollection": [
                {"DeviceIdentifiers": {"DeviceIdentifier": [{"Kind": k, "Identifier": i} for k, i in device]}}
                for device in devices
            ]},
            "ServiceName": "fast1", "StateName": "new active", "ServicePlan": "4G East", "MdnZipCode": "94203",
        },
        _soapheaders={"token": token},
    )


def rest_callback(request_id, imei, status="Success", count=1, username=THINGSPACE_USER, password=THINGSPACE_PASSWORD):
    """A callback as ThingSpace posts it (the REST document's example, one device)."""
    return {
        "username": username, "password": password, "requestId": request_id,
        "deviceIds": [{"id": imei, "kind": "imei"}],
        "deviceResponse": {"goToStateResponse": {
            "deviceIds": [{"id": "5105551234", "kind": "mdn"}, {"id": imei, "kind": "imei"}],
            "ipAddress": "10.0.0.1", "servicePlan": "4G East", "accountName": ACCOUNT,
            "serviceName": "fast1", "stateName": "new active", "smsrOid": "", "subscriptionTypeCode": "",
            "subscriptionTypeDesc": "", "stageStateChangeReasonCode": "", "stageStateChangeReasonDesc": "",
        }},
        "status": status, "callbackCount": count, "maxCallbackThreshold": 4,
    }


def receiver_url(gateway, account=ACCOUNT, service="StateService"):
    return f"{gateway.url}/callbacks/thingspace/{account}/{service}"


def post_callback(gateway, body):
    return requests.post(receiver_url(gateway), json=body, timeout=10)


def parsed(envelope):
    root = etree.fromstring(envelope)
    request = root.find("s:Body/v2:CallbackRequest", V2)
    assert request is not None, envelope

    def text(path):
        return request.findtext(path, namespaces=V2)

    return request, text


def outbox(gateway, state):
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "callbacks", state], cwd=ROOT, env=gateway.env,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[1:]


def identity(envelope):
    _, text = parsed(envelope)
    return text("v2:RequestId"), text("v2:Device/v2:Identifier")


# -- the loop through ThingSpace (the simulator) ---------------------------


def test_a_two_device_go_to_state_yields_two_legacy_callbacks(tmp_path, simulator, listener):
    simulator.reset()
    simulator.fail_device("990000862471855", "DEVICE_NOT_READY", "Device is not in a state to be changed")
    gateway = bridge(tmp_path, simulator).start()
    try:
        token = register(gateway, listener.url)
        request_id = go_to_state(gateway, token, [
            [("Imei", "990000862471854"), ("ICCID", "89148000000800784259")],
            [("Imei", "990000862471855"), ("ICCID", "89148000000800784260")],
        ])
        listener.wait_for(2)
        wait_until_settled(gateway, delivered=2)
        envelopes = listener.acknowledged()
    finally:
        gateway.stop()
    assert len(envelopes) == 2
    by_device = {}
    for envelope in envelopes:
        assert b"ts-secret" not in envelope and THINGSPACE_USER.encode() not in envelope
        request, text = parsed(envelope)
        by_device[text("v2:Device/v2:Identifier")] = (request, text)
        assert text("v2:RequestId") == request_id
        assert (text("v2:Username"), text("v2:Password")) == (LEGACY_USER, LEGACY_PASSWORD)
        assert text("v2:Device/v2:Kind") == "Imei", "Kind is spelled as the client spelled it"
        go = "v2:Data/v2:Data/v2:GoToState/"
        kinds = [e.text for e in request.findall(go + "v2:DeviceIdentifierCollection/v2:DeviceIdentifier/v2:Kind", V2)]
        assert kinds[:2] == ["Imei", "ICCID"]
        assert (text(go + "v2:StateName"), text(go + "v2:ServiceName"), text(go + "v2:ServicePlan"),
                text(go + "v2:AccountName")) == ("new active", "fast1", "4G East", ACCOUNT)
        assert (text("v2:Data/v2:Data/v2:CallbackCount"), text("v2:Data/v2:Data/v2:MaxCallbackThreshold")) == ("1", "8")
    _, ok = by_device["990000862471854"]
    assert ok("v2:Data/v2:Data/v2:Status") == "Success"
    success_fault = by_device["990000862471854"][0].find("v2:Data/v2:Data/v2:Fault", V2)
    assert success_fault.get(f"{{{ns.XSI}}}nil") == "true"
    _, failed = by_device["990000862471855"]
    assert failed("v2:Data/v2:Data/v2:Status") == "Failed"
    assert failed("v2:Data/v2:Data/v2:Fault/v2:faultcode") == "DEVICE_NOT_READY"
    assert failed("v2:Data/v2:Data/v2:Fault/v2:faultstring") == "Device is not in a state to be changed"


def test_a_listener_failing_for_a_while_gets_every_callback_once(tmp_path, simulator, listener):
    simulator.reset()
    listener.status = 500
    gateway = bridge(tmp_path, simulator).start()
    try:
        token = register(gateway, listener.url)
        go_to_state(gateway, token, [[("IMEI", "990000862471856")], [("IMEI", "990000862471857")]])
        deadline = time.monotonic() + 20
        while len(listener.all()) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        listener.status = 200
        listener.wait_for(2)
        wait_until_settled(gateway, delivered=2)
    finally:
        gateway.stop()
    acknowledged = [identity(e) for e in listener.acknowledged()]
    assert len(acknowledged) == len(set(acknowledged)) == 2
    for device in {device for _, device in acknowledged}:
        counts = [int(parsed(body)[1]("v2:Data/v2:Data/v2:CallbackCount"))
                  for _, _, body, _ in listener.all() if identity(body)[1] == device]
        assert counts == list(range(1, len(counts) + 1)) and len(counts) >= 3


def test_register_list_and_unregister_through_soap(tmp_path, simulator, listener):
    simulator.reset()
    gateway = bridge(tmp_path, simulator).start()
    try:
        token = register(gateway, listener.url)
        service = soap(gateway, "CallbackRegistrationService")
        listed = service.GetCallbackRegistrations(Input={"AccountName": ACCOUNT}, _soapheaders={"token": token})
        upstream = simulator.requests(f"/api/m2m/v1/callbacks/{ACCOUNT}")
        service.UnregisterCallback(Input={"AccountName": ACCOUNT, "ServiceName": "StateService"},
                                   _soapheaders={"token": token})
        after = service.GetCallbackRegistrations(Input={"AccountName": ACCOUNT}, _soapheaders={"token": token})
    finally:
        gateway.stop()
    (registration,) = listed.Registrations.CallbackRegistration
    assert (registration.ServiceName, registration.Url, registration.Username) == ("StateService", listener.url, LEGACY_USER)
    posted = [r for r in upstream if r["method"] == "POST"][0]["json"]
    assert posted == {"name": "StateService", "url": receiver_url(gateway),
                      "username": THINGSPACE_USER, "password": THINGSPACE_PASSWORD}
    assert after.Registrations is None
    assert simulator.requests(f"/api/m2m/v1/callbacks/{ACCOUNT}/name/StateService")[0]["method"] == "DELETE"


def test_register_callback_refuses_a_service_it_cannot_bridge(tmp_path, simulator):
    simulator.reset()
    gateway = bridge(tmp_path, simulator).start()
    try:
        token = log_in(gateway)
        with pytest.raises(zeep.exceptions.Fault) as raised:
            soap(gateway, "CallbackRegistrationService").RegisterCallback(
                Input={"AccountName": ACCOUNT, "ServiceName": "CarrierService", "Url": "http://127.0.0.1:9/"},
                _soapheaders={"token": token},
            )
    finally:
        gateway.stop()
    assert raised.value.code == "s:Client" and raised.value.message.startswith("ServiceName:")
    assert simulator.requests(f"/api/m2m/v1/callbacks/{ACCOUNT}") == []


# -- the receiver, posted to as ThingSpace would ---------------------------


@pytest.fixture
def registered(tmp_path, simulator, listener):
    """A running bridge with the listener registered for ACCOUNT's StateService."""
    simulator.reset()
    gateway = bridge(tmp_path, simulator).start()
    register(gateway, listener.url)
    yield gateway
    gateway.stop()


def test_wrong_callback_credentials_get_401_and_nothing_is_stored(registered, listener):
    for username, password in [(THINGSPACE_USER, "wrong"), ("wrong", THINGSPACE_PASSWORD), ("", "")]:
        answer = post_callback(registered, rest_callback("r-401", "1", username=username, password=password))
        assert answer.status_code == 401
    assert set(outbox_counts(registered).values()) == {0}  # nothing stored, so nothing to send
    assert listener.all() == []


@pytest.mark.parametrize(
    "body, status",
    [
        (b"{not json", 400),
        (b'{"username": "ts-user", "password": "ts-secret-4d1f"}', 400),  # no requestId
        (b"[" * 100_000 + b"]" * 100_000, 400),
    ],
)
def test_a_malformed_callback_gets_400_and_is_kept_nowhere(registered, listener, body, status):
    answer = requests.post(receiver_url(registered), data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert answer.status_code == status
    assert set(outbox_counts(registered).values()) == {0}


def test_a_duplicate_callback_is_acknowledged_and_delivered_once(registered, listener):
    assert post_callback(registered, rest_callback("r-dup", "990000000000001")).status_code == 200
    listener.wait_for(1)
    # ThingSpace's retry of the same callback carries the next callbackCount.
    assert post_callback(registered, rest_callback("r-dup", "990000000000001", count=2)).status_code == 200
    assert wait_until_settled(registered, delivered=1)["delivered"] == 1
    assert len(listener.all()) == 1


@pytest.mark.process
def test_a_callback_without_a_listener_waits_visibly_until_one_is_registered(tmp_path, simulator, listener):
    simulator.reset()
    gateway = bridge(tmp_path, simulator).start()
    try:
        assert post_callback(gateway, rest_callback("r-wait", "990000000000002")).status_code == 200
        time.sleep(0.5)
        waiting = outbox(gateway, "pending")
        assert len(waiting) == 1 and "r-wait" in waiting[0]
        register(gateway, listener.url)
        listener.wait_for(1)
    finally:
        gateway.stop()
    assert identity(listener.acknowledged()[0]) == ("r-wait", "990000000000002")


def test_a_callback_waiting_for_a_listener_goes_as_soon_as_one_is_registered(tmp_path, simulator, listener, monkeypatch):
    # An idle worker looks again only every IDLE_POLL_S: made long here, so
    # that only the registration waking it can deliver within the wait below.
    monkeypatch.setattr(delivery, "IDLE_POLL_S", 60.0)
    simulator.reset()
    gateway = bridge(tmp_path, simulator).start()
    try:
        assert post_callback(gateway, rest_callback("r-waiting", "990000000000005")).status_code == 200
        assert outbox_counts(gateway)["pending"] == 1
        register(gateway, listener.url)
        (envelope,) = listener.wait_for(1, timeout_s=5)
    finally:
        gateway.stop()
    assert identity(envelope) == ("r-waiting", "990000000000005")


@pytest.mark.process
def test_dead_letters_are_listed_and_re_driven(tmp_path, simulator, listener):
    simulator.reset()
    listener.status = 503
    gateway = bridge(tmp_path, simulator, callbacks_max_attempts="2").start()
    try:
        register(gateway, listener.url)
        post_callback(gateway, rest_callback("r-dead", "990000000000003"))
        deadline = time.monotonic() + 20
        while not outbox(gateway, "dead") and time.monotonic() < deadline:
            time.sleep(0.2)
        (dead,) = outbox(gateway, "dead")
        assert "r-dead" in dead and "HTTP 503" in dead
        assert len(listener.all()) == 2
        listener.status = 200
        retried = subprocess.run([sys.executable, "-m", "gateway", "callbacks", "retry", "--all"], cwd=ROOT,
                                 env=gateway.env, capture_output=True, text=True, timeout=60)
        assert retried.stdout.strip() == "1 callbacks back to pending"
        (envelope,) = listener.wait_for(1)
    finally:
        gateway.stop()
    assert identity(envelope) == ("r-dead", "990000000000003")
    assert outbox(gateway, "dead") == []


def test_a_burst_of_1000_callbacks_is_delivered_exactly_once_each(registered, listener):
    bodies = [rest_callback(f"r-burst-{n // 10}", f"99000000{n:07d}") for n in range(1000)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda body: post_callback(registered, body).status_code, bodies))
    assert statuses == [200] * 1000
    listener.wait_for(1000, timeout_s=120)
    wait_until_settled(registered, delivered=1000)
    delivered = [identity(e) for e in listener.acknowledged()]
    assert len(delivered) == 1000
    assert set(delivered) == {(b["requestId"], b["deviceIds"][0]["id"]) for b in bodies}


# -- crashes ---------------------------------------------------------------


@pytest.mark.process
def test_callbacks_stored_when_the_gateway_is_killed_are_delivered_after_restart(tmp_path, simulator, listener):
    # No listener registered yet: the callbacks wait in the store, unclaimed,
    # when the gateway dies. (A claim held at the kill lapses after the lease:
    # test_store_outages and test_multi_instance wait that out.)
    simulator.reset()
    gateway = bridge(tmp_path, simulator, Gateway).start()
    try:
        bodies = [rest_callback("r-kill", f"99000000000{n:04d}") for n in range(20)]
        assert all(post_callback(gateway, body).status_code == 200 for body in bodies)
        gateway.stop(signal.SIGKILL)
        gateway.start()
        register(gateway, listener.url)
        listener.wait_for(20)
        wait_until_settled(gateway, delivered=20)
    finally:
        gateway.stop()
    delivered = [identity(e) for e in listener.acknowledged()]
    assert sorted(delivered) == sorted(("r-kill", b["deviceIds"][0]["id"]) for b in bodies)


@pytest.mark.process
def test_a_callback_stored_but_not_acknowledged_before_a_kill_is_not_delivered_twice(tmp_path, simulator, listener):
    simulator.reset()
    gateway = bridge(tmp_path, simulator, Gateway).start()  # no listener yet: what is stored waits
    try:
        body = rest_callback("r-unacked", "990000000009999")
        # ThingSpace's POST, whose answer it never reads: the gateway dies first.
        payload = requests.Request("POST", receiver_url(gateway), json=body).prepare()
        with socket.create_connection(("127.0.0.1", gateway.port)) as raw:
            head = f"POST {payload.path_url} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            raw.sendall(f"{head}Content-Length: {len(payload.body)}\r\n\r\n".encode() + payload.body)
            deadline = time.monotonic() + 10
            while not outbox_counts(gateway)["pending"] and time.monotonic() < deadline:
                time.sleep(0.05)
            gateway.stop(signal.SIGKILL)
        gateway.start()
        # ThingSpace retries the callback it has no acknowledgement for.
        retry = post_callback(gateway, {**body, "callbackCount": 2})
        register(gateway, listener.url)
        listener.wait_for(1)
        wait_until_settled(gateway, delivered=1)
    finally:
        gateway.stop()
    assert retry.status_code == 200
    assert [identity(e) for e in listener.acknowledged()] == [("r-unacked", "990000000009999")]


# -- operators -------------------------------------------------------------


@pytest.mark.process
def test_an_operator_registers_a_listener_from_the_command_line(tmp_path, simulator, listener):
    simulator.reset()
    gateway = bridge(tmp_path, simulator)
    env = {**gateway.env, "THINGSPACE_PASSWORD": "demo-password", "LISTENER_PASSWORD": LEGACY_PASSWORD}
    command = [sys.executable, "-m", "gateway", "callbacks"]
    registered = subprocess.run(
        [*command, "register", ACCOUNT, "StateService", listener.url, "--m2m-user", "demo",
         "--listener-username", LEGACY_USER, "--listener-password"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert registered.returncode == 0, registered.stderr
    listed = subprocess.run([*command, "list"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert listed.stdout.splitlines() == [f"{ACCOUNT}\tStateService\t{listener.url}\t{LEGACY_USER}"]
    (posted,) = [r for r in simulator.requests(f"/api/m2m/v1/callbacks/{ACCOUNT}") if r["method"] == "POST"]
    assert posted["json"]["url"] == receiver_url(gateway)
    assert [r["path"] for r in simulator.requests()][-1] == "/api/m2m/v1/session/logout"
    assert LEGACY_PASSWORD not in registered.stdout + registered.stderr


def test_an_oversized_callback_is_refused_with_413_and_kept_nowhere(registered):
    body = rest_callback("r-big", "990000000000004")
    body["deviceResponse"]["goToStateResponse"]["stateName"] = "x" * (2 << 20)
    answer = requests.post(receiver_url(registered), json=body, timeout=30)
    assert answer.status_code == 413
    assert set(outbox_counts(registered).values()) == {0}


def test_housekeeping_forgets_delivered_callbacks_and_spellings_after_the_retention(tmp_path):
    from gateway import config
    from gateway.callbacks.delivery import HOUSEKEEPING_S, DeliveryWorker
    from gateway.callbacks.policy import ListenerPolicy
    from gateway.store import SqliteStore

    store = SqliteStore(str(tmp_path / "store.sqlite3"))
    settings = config.load(environ={})
    worker = DeliveryWorker(store, settings.callbacks, retain_s=100, policy=ListenerPolicy.from_config(settings))
    store.put_registration(ACCOUNT, "StateService", "http://127.0.0.1:9/", "", "")
    store.add_callback("key-1", ACCOUNT, "StateService", "r-old", "{}", now=1000)
    (claimed,) = store.claim_due("w", now=1000, lease_s=10, limit=1)
    store.mark_delivered(claimed.id, "w", now=1000)
    store.remember_request("r-old", {"imei": "Imei"}, now=1000)

    worker._housekeeping(1050)  # within the retention: kept
    assert store.counts()["delivered"] == 1 and store.forwarded_request("r-old").kind_spellings == {"imei": "Imei"}
    worker._housekeeping(1050 + HOUSEKEEPING_S)  # past it
    assert store.counts()["delivered"] == 0 and store.forwarded_request("r-old") is None
    # Forgotten, the dedupe key no longer holds: ThingSpace stopped retrying long ago.
    assert store.add_callback("key-1", ACCOUNT, "StateService", "r-old", "{}", now=2000) is True
