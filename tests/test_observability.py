"""/healthz, /readyz and /metrics of a gateway under gunicorn with two workers."""

import os
import signal
import socket
import time

import pytest
import requests
import zeep
from lxml import etree
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client

from gateway.metrics import MULTIPROCESS_DIR, metrics_app
from gateway.store import SqliteStore
from tests import envelopes
from tests.conftest import Gateway

pytestmark = pytest.mark.process

ACCOUNT = "0000123456-00001"


def scrape(gateway):
    """{(sample name, frozenset of labels): value}."""
    text = requests.get(gateway.url + "/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def two_workers(tmp_path, upstream):
    process = Gateway(
        tmp_path, upstream.url, server_workers="2",
        callbacks_username="gw", callbacks_password="gw-secret", callbacks_backoff_s="0.1", callbacks_max_attempts="2",
    ).start()
    # Both workers forked: the port listens from the master's bind, before them.
    deadline = time.monotonic() + 30
    while len(process.pids()) < 3:
        assert time.monotonic() < deadline, "gunicorn did not fork its two workers"
        time.sleep(0.05)
    yield process
    process.stop()


def test_healthz_answers_while_the_process_runs(gateway):
    answer = requests.get(gateway.url + "/healthz", timeout=10)
    assert (answer.status_code, answer.text) == (200, "ok\n")


def test_readyz_is_ready_with_a_store_delivery_under_way_and_a_bearer(gateway):
    answer = requests.get(gateway.url + "/readyz", timeout=10)
    assert (answer.status_code, answer.json()) == (200, {"ready": True, "store": "ok", "delivery": "ok", "upstream": "ok"})


def test_readyz_is_not_ready_when_thingspace_cannot_be_reached(new_gateway_app):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        app = new_gateway_app(f"http://127.0.0.1:{closed.getsockname()[1]}")
        answer = Client(app).get("/readyz")
    assert answer.status_code == 503
    assert answer.json == {
        "ready": False, "store": "ok", "delivery": "ok", "upstream": "ThingSpace could not be reached (connection refused)"
    }


def test_counters_move_by_exactly_what_a_scripted_scenario_did(two_workers, upstream, listener):
    before = scrape(two_workers)
    token = zeep.Client(two_workers.service_url("SessionService") + "?wsdl").service.LogIn(
        Input={"Username": "demo", "Password": "demo-password"}
    )
    zeep.Client(two_workers.service_url("CallbackRegistrationService") + "?wsdl").service.RegisterCallback(
        Input={"AccountName": ACCOUNT, "ServiceName": "StateService", "Url": listener.url}, _soapheaders={"token": token}
    )
    devices = {"DeviceList": {"xml": envelopes.devices_xml([[("IMEI", "990000862471854")], [("IMEI", "990000862471855")]])}}
    post = lambda body: requests.post(two_workers.service_url("StateService"), data=body, headers={"Content-Type": "text/xml"}, timeout=30)  # noqa: E731
    assert post(envelopes.go_to_state({**envelopes.VALID, **devices}, token=token)).status_code == 200
    assert post(envelopes.go_to_state({**envelopes.VALID, **devices, "SkuNumber": "S" * 21}, token=token)).status_code == 500
    listener.wait_for(2)
    # The delivered counter moves just after the listener's answer is recorded.
    delivered_before = value(before, "m2mgw_callbacks_delivered_total")
    deadline = time.monotonic() + 20
    while value(after := scrape(two_workers), "m2mgw_callbacks_delivered_total") < delivered_before + 2:
        assert time.monotonic() < deadline, "the delivered counter did not move by 2"
        time.sleep(0.05)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    requests_total = "m2mgw_soap_requests_total"
    assert moved(requests_total, service="SessionService", operation="LogIn", outcome="ok") == 1
    assert moved(requests_total, service="CallbackRegistrationService", operation="RegisterCallback", outcome="ok") == 1
    assert moved(requests_total, service="StateService", operation="GoToState", outcome="ok") == 1
    assert moved(requests_total, service="StateService", operation="GoToState", outcome="client_fault") == 1
    assert moved("m2mgw_callbacks_received_total", outcome="stored") == 2
    assert moved("m2mgw_callbacks_delivered_total") == 2
    assert moved("m2mgw_callbacks_retried_total") == 0
    assert moved("m2mgw_upstream_request_seconds_count", call="goToState") == 1
    assert moved("m2mgw_upstream_request_seconds_count", call="login") == 1
    assert moved("m2mgw_upstream_request_seconds_count", call="registerCallback") == 1
    assert value(after, "m2mgw_outbox_callbacks", state="delivered") == 2
    assert value(after, "m2mgw_outbox_oldest_pending_seconds") == 0


def test_retries_dead_letters_and_the_waiting_outbox_are_counted(two_workers, upstream, listener):
    listener.status = 500
    token = zeep.Client(two_workers.service_url("SessionService") + "?wsdl").service.LogIn(
        Input={"Username": "demo", "Password": "demo-password"}
    )
    zeep.Client(two_workers.service_url("CallbackRegistrationService") + "?wsdl").service.RegisterCallback(
        Input={"AccountName": ACCOUNT, "ServiceName": "StateService", "Url": listener.url}, _soapheaders={"token": token}
    )
    body = {
        "username": "gw", "password": "gw-secret", "requestId": "r-metrics", "status": "Success",
        "deviceIds": [{"kind": "imei", "id": "990000000000077"}],
    }
    receiver = f"{two_workers.url}/callbacks/thingspace/{ACCOUNT}/StateService"
    assert requests.post(receiver, json=body, timeout=10).status_code == 200
    assert requests.post(receiver, json={**body, "callbackCount": 2}, timeout=10).status_code == 200
    assert requests.post(receiver, json={**body, "password": "wrong"}, timeout=10).status_code == 401
    deadline = time.monotonic() + 20
    while value(scrape(two_workers), "m2mgw_callbacks_dead_total") < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    samples = scrape(two_workers)
    assert value(samples, "m2mgw_callbacks_received_total", outcome="stored") == 1
    assert value(samples, "m2mgw_callbacks_received_total", outcome="duplicate") == 1
    assert value(samples, "m2mgw_callbacks_received_total", outcome="refused") == 1
    assert value(samples, "m2mgw_callbacks_retried_total") == 1
    assert value(samples, "m2mgw_callbacks_dead_total") == 1
    assert value(samples, "m2mgw_outbox_callbacks", state="dead") == 1
    assert len(listener.all()) == 2


@pytest.fixture
def gateway_alone(tmp_path, upstream):
    process = Gateway(tmp_path, upstream.url).start()
    yield process
    process.stop()


def test_an_answer_that_cannot_be_written_is_a_logged_and_counted_server_fault(gateway_alone):
    from gateway.soap.application import RESPONSE_FAILED_TEXT
    from gateway.store import SqliteStore

    gateway, account = gateway_alone, ACCOUNT
    store = SqliteStore(gateway.env["M2MGW_STORE_PATH"])
    # A value no XML document can carry (kept by an older version, or written by hand).
    store.put_registration(account, "StateService", "http://127.0.0.1:9/listener", "user\x01name", "")
    store.close()
    before = scrape(gateway)
    token = zeep.Client(gateway.service_url("SessionService") + "?wsdl").service.LogIn(
        Input={"Username": "demo", "Password": "demo-password"}
    )
    client = zeep.Client(gateway.service_url("CallbackRegistrationService") + "?wsdl")
    message = client.create_message(
        client.service, "GetCallbackRegistrations", Input={"AccountName": account}, _soapheaders={"token": token}
    )
    answer = requests.post(
        gateway.service_url("CallbackRegistrationService"),
        data=etree.tostring(message),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
        timeout=10,
    )
    after = scrape(gateway)

    assert answer.status_code == 500
    assert "<faultcode>s:Server</faultcode>" in answer.text and RESPONSE_FAILED_TEXT in answer.text
    labels = {"service": "CallbackRegistrationService", "operation": "GetCallbackRegistrations"}
    total = "m2mgw_soap_requests_total"
    assert value(after, total, **labels, outcome="server_fault") - value(before, total, **labels, outcome="server_fault") == 1
    assert value(after, total, **labels, outcome="ok") == value(before, total, **labels, outcome="ok")
    request_id = answer.headers["X-Request-Id"]
    logged = [line for line in gateway.log().splitlines() if f"[{request_id}]" in line]
    assert any("GetCallbackRegistrations ran, but its answer could not be written" in line for line in logged), logged


def test_a_worker_that_exits_is_replaced_by_one_that_boots_and_serves_metrics(two_workers):
    # A worker exits through the master's own stack (fork): what that stack
    # cleans up on its way out (the metrics directory) must stay for the others.
    _, *workers = two_workers.pids()
    # SIGQUIT: the worker leaves at once (SIGTERM would first sleep out its 1 s poll).
    os.kill(workers[0], signal.SIGQUIT)
    deadline = time.monotonic() + 30
    while not [pid for pid in two_workers.pids()[1:] if pid not in workers]:
        assert two_workers.popen.poll() is None, "the gateway stopped: " + two_workers.log()[-2000:]
        assert time.monotonic() < deadline, "no worker replaced the one that exited"
        time.sleep(0.05)
    # A replacement that cannot boot takes the whole gateway down within this.
    watched_until = time.monotonic() + 2
    while time.monotonic() < watched_until:
        assert requests.get(two_workers.url + "/metrics", timeout=10).status_code == 200
        time.sleep(0.05)
    assert two_workers.popen.poll() is None
    assert "Worker failed to boot" not in two_workers.log()


def test_a_scrape_while_a_new_worker_s_counter_file_is_still_empty_serves_the_others(tmp_path, monkeypatch):
    """The moment test_a_worker_that_exits... hits only now and then, made to happen:
    a forked worker has created its file and not yet sized it."""
    monkeypatch.setenv(MULTIPROCESS_DIR, str(tmp_path))
    running = MmapedDict(str(tmp_path / "counter_101.db"))
    running.write_value(
        mmap_key("m2mgw_callbacks_delivered", "m2mgw_callbacks_delivered_total", [], [], "delivered"), 7.0, 0.0
    )
    running.close()
    (tmp_path / "counter_102.db").touch()  # the new worker's, as created: 0 bytes

    store = SqliteStore(tmp_path / "gateway.sqlite3")
    try:
        answer = Client(metrics_app(store)).get("/metrics")
    finally:
        store.close()
    assert answer.status_code == 200
    assert "m2mgw_callbacks_delivered_total 7.0" in answer.get_data(as_text=True)
