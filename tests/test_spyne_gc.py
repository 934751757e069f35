"""The collector and requests: no forced full collection, no reference cycle left by a request's
contexts, nothing of a request's size left to the collector, a worker's own objects out of its way."""

import gc

from lxml import etree
from spyne.context import MethodContext, ProtocolContext, TransportContext
from werkzeug.test import Client

from gateway import config, ns
from gateway.app import Gateway
from tests import envelopes
from tests.inprocess import InProcess


def test_a_request_does_not_force_a_full_collection(tmp_path):
    gateway = Gateway(config.load(environ={"M2MGW_STORE_PATH": str(tmp_path / "store.sqlite3")}))
    full_collections = []

    def watch(phase, info):
        if phase == "start" and info["generation"] == 2:
            full_collections.append(info)

    gc.callbacks.append(watch)
    try:
        for _ in range(3):  # a client fault: Spyne's whole request cycle, no upstream call
            answer = Client(gateway).post(
                "/api/v2/StateService.svc",
                data=envelopes.go_to_state({}),
                headers={"Content-Type": "text/xml; charset=utf-8"},
            )
            assert answer.status_code == 500 and b"s:Client" in answer.data
    finally:
        gc.callbacks.remove(watch)
        gateway.close(timeout=5)
    assert full_collections == []


def test_a_request_leaves_nothing_of_its_size_to_the_cyclic_collector(gateway_app, upstream):
    """Spyne's contexts are reference cycles. With its forced collection off, a request's body,
    tree and records must go when it is answered, not wait there for a full collection."""
    gateway = InProcess(gateway_app)
    devices = [[("IMEI", f"99000086{n:07d}")] for n in range(1_000)]
    body = envelopes.go_to_state({**envelopes.VALID, "DeviceList": {"xml": envelopes.devices_xml(devices)}}, gateway.log_in())
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds unreachable stays in gc.garbage, to be looked at
    try:
        status, answer = gateway.post("StateService", body)
        gc.collect()
        left = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert status == 200, answer
    assert upstream.requests("/api/m2m/v1/devices/actions/goToState")
    assert len(left) < len(devices), "the request's records were left to the cyclic collector"
    assert [o for o in left if isinstance(o, list) and body in o] == [], "the request's body was left to the cyclic collector"
    trees = [o for o in left if isinstance(o, etree._Element) and o.getroottree().find(f".//{{{ns.STATE}}}DeviceList") is not None]
    assert trees == [], "the request's tree was left to the cyclic collector"


def test_a_worker_leaves_what_it_built_to_serve_out_of_full_collections(tmp_path, monkeypatch):
    """A full collection in a served worker walks the requests' objects, not the application's
    own tens of thousands (a 10,000-device request triggers one)."""
    from gateway import logs
    from gateway.server import GatewayServer

    monkeypatch.setattr(logs, "configure", lambda *args: None)  # this process's logging stays pytest's
    server = GatewayServer(config.load(environ={"M2MGW_STORE_PATH": str(tmp_path / "store.sqlite3")}))
    gateway = server.load()
    try:
        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()
        gateway.close(timeout=5)
    assert frozen > 10_000


def test_a_go_to_state_leaves_no_reference_cycle_of_its_contexts_or_documents(tmp_path, simulator):
    environ = {"M2MGW_STORE_PATH": str(tmp_path / "store.sqlite3"), "M2MGW_UPSTREAM_BASE_URL": simulator.url}
    gateway = Gateway(config.load(environ=environ))
    client = InProcess(gateway)
    device_list = {"xml": envelopes.devices_xml([[("IMEI", "990000862471854")]])}
    go_to_state = envelopes.go_to_state({**envelopes.VALID, "DeviceList": device_list}, token=client.log_in())
    assert client.post("StateService", go_to_state)[0] == 200  # builds what every later request shares
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the cycle collector frees is kept in gc.garbage instead
    try:
        for _ in range(3):
            assert client.post("StateService", go_to_state)[0] == 200
        gc.collect()
        spyne_or_lxml = (MethodContext, ProtocolContext, TransportContext, etree._Element)
        left = [type(o).__name__ for o in gc.garbage if isinstance(o, spyne_or_lxml)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gateway.close(timeout=5)
    assert left == []
