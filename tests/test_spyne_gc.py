"""Spyne's forced full garbage collection is off, and its contexts leave no reference cycle behind:
no request pays for a gc.collect() pause, nor leaves its documents to the cycle collector."""

import gc

from lxml import etree
from spyne.context import MethodContext, ProtocolContext, TransportContext
from werkzeug.test import Client

from gateway import config
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
