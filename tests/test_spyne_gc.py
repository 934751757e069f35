"""The collector and requests: no forced full collection, no reference cycle left by a request's
contexts, nothing of a request's size left to the collector, a worker's own objects out of its way."""

import gc
import weakref

from lxml import etree
from werkzeug.test import Client

from gateway import config, ns
from gateway.app import Gateway
from gateway.soap.services import StateService
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
    devices = [[("IMEI", f"3575{n:011d}")] for n in range(1_000)]  # identifiers no other test uses
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
    # Only the gateway's records of this request's identifiers are looked at. The process
    # runs the simulator meanwhile, whose callback for this very request (a document with a
    # requestId, which the gateway's goToState body has not) holds them too.
    identifiers = {identifier for device in devices for _, identifier in device}
    callbacks = {id(part) for o in left if isinstance(o, dict) and "requestId" in o for part in _parts(o)}
    records = [o for o in left if id(o) not in callbacks and _holds_any(o, identifiers)]
    assert records == [], "the request's records were left to the cyclic collector"
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
    """With the cycle collector off, each request's contexts are gone once it is answered, and no
    document of it is left for the collector. Only this test's requests are looked at: the
    worker process may be running other tests' servers meanwhile."""
    environ = {"M2MGW_STORE_PATH": str(tmp_path / "store.sqlite3"), "M2MGW_UPSTREAM_BASE_URL": simulator.url}
    gateway = Gateway(config.load(environ=environ))
    client = InProcess(gateway)
    imei = "990000862471854"
    device_list = {"xml": envelopes.devices_xml([[("IMEI", imei)]])}
    go_to_state = envelopes.go_to_state({**envelopes.VALID, "DeviceList": device_list}, token=client.log_in())
    assert client.post("StateService", go_to_state)[0] == 200  # builds what every later request shares
    contexts = []

    def watch(ctx):  # every part of the request's context, weakly
        parts = (ctx, ctx.transport, ctx.inprot_ctx, ctx.outprot_ctx, ctx.event)
        contexts.extend(weakref.ref(part) for part in parts if part is not None)

    StateService.event_manager.add_listener("method_call", watch)
    gc.collect()
    gc.disable()  # what a cycle holds stays held: only reference counting frees anything now
    gc.set_debug(gc.DEBUG_SAVEALL)  # and what the collector finds at the end is kept to be looked at
    try:
        for _ in range(3):
            assert client.post("StateService", go_to_state)[0] == 200
        held = sorted(type(ref()).__name__ for ref in contexts if ref() is not None)
        gc.collect()
        ours = [o for o in gc.garbage if isinstance(o, etree._Element) and imei.encode() in etree.tostring(o.getroottree())]
    finally:
        gc.set_debug(0)
        gc.enable()
        gc.garbage.clear()
        StateService.event_manager.del_listener("method_call", watch)
        gateway.close(timeout=5)
    assert len(contexts) >= 3 * 4
    assert held == [], "the request's contexts are a reference cycle"
    assert ours == [], "the request's documents were left to the cycle collector"


def _holds_any(container, strings, depth=2):
    """Whether ``container`` (a list, tuple or dict) holds one of ``strings``, itself or ``depth`` levels down."""
    if isinstance(container, dict):
        items = [*container.keys(), *container.values()]
    elif isinstance(container, (list, tuple)):
        items = container
    else:
        return False
    return any(
        item in strings if isinstance(item, str) else depth > 0 and _holds_any(item, strings, depth - 1) for item in items
    )


def _parts(document):
    """``document`` (parsed JSON) and every dict and list inside it."""
    yield document
    for item in document.values() if isinstance(document, dict) else document:
        if isinstance(item, (dict, list)):
            yield from _parts(item)
