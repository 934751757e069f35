"""A corpus of hostile and malformed requests: each gets a clear fault, none reaches ThingSpace."""

import http.server
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from lxml import etree

from gateway import ns
from tests import envelopes
from tests.conftest import Gateway

DOCTYPE_REFUSED = "DOCTYPE is not allowed"
LIBRARY_WORDS = ("lxml", "libxml", "Traceback", "spyne", "File \"", "XMLSyntaxError")


class FetchTrap:
    """An HTTP server an external entity would be fetched from; nothing may ever ask."""

    def __init__(self):
        self.hits = []
        trap = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                trap.hits.append(self.path)
                body = b'<!ENTITY x "fetched">'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def trap():
    server = FetchTrap()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def small_gateway(tmp_path_factory, simulator):
    """A gateway with a 1 MB body limit, so the limit itself can be crossed quickly."""
    process = Gateway(tmp_path_factory.mktemp("small"), simulator.url, server_max_body_bytes=str(1 << 20))
    yield process.start()
    process.stop()


def post(gateway, body, service="StateService", **headers):
    return requests.post(
        gateway.service_url(service), data=body, headers={"Content-Type": "text/xml; charset=utf-8", **headers}, timeout=30
    )


def fault_of(answer):
    assert answer.status_code == 500, answer.text[:300]
    root = etree.fromstring(answer.content)  # always well-formed
    fault = root.find(f"{{{ns.SOAP_ENV}}}Body/{{{ns.SOAP_ENV}}}Fault")
    text = fault.findtext("faultstring")
    assert not any(word in text for word in LIBRARY_WORDS), text
    # WCF's shape: no detail (an undeclared element there stops strict toolkits);
    # the request id that finds it in the log is the header's.
    assert fault.find("detail") is None and answer.headers["X-Request-Id"]
    return fault.findtext("faultcode"), text


def legacy(body):
    return envelopes.go_to_state(envelopes.VALID, header="<v2:token>t</v2:token>").replace(
        b"<n:ServiceName>fast1</n:ServiceName>", body.encode()
    )


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + "]>"
)


def doctype_cases(trap_url):
    body = envelopes.go_to_state(envelopes.VALID).decode()
    with_entity = body.replace("<n:ServiceName>fast1", "<n:ServiceName>&e;")
    return {
        "billion laughs": BILLION_LAUGHS + body.replace("fast1", "&lol9;"),
        "external entity over file": '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + with_entity,
        "external entity over http": f'<!DOCTYPE x [<!ENTITY e SYSTEM "{trap_url}/e">]>' + with_entity,
        "parameter entity": f'<!DOCTYPE x [<!ENTITY % p SYSTEM "{trap_url}/p.dtd"> %p;]>' + body,
        "external DTD": f'<!DOCTYPE x SYSTEM "{trap_url}/x.dtd">' + body,
        "after a comment": '<?xml version="1.0"?>\n<!-- hello -->\n<!DOCTYPE x []>' + body,
    }


@pytest.mark.parametrize("case", list(doctype_cases("http://x")))
def test_any_doctype_is_refused_and_nothing_is_fetched(served_gateway, upstream, trap, case):
    answer = post(served_gateway, doctype_cases(trap.url)[case].encode())
    code, text = fault_of(answer)
    assert (code, text) == ("s:Client", "DOCTYPE is not allowed in a SOAP message (no DTD, no entity declarations)")
    assert "root:" not in answer.text
    assert trap.hits == []
    assert upstream.requests() == []


def test_a_doctype_in_utf16_is_refused_too(served_gateway, upstream):
    body = ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x []>' + envelopes.go_to_state(envelopes.VALID).decode())
    code, text = fault_of(post(served_gateway, body.encode("utf-16")))
    assert code == "s:Client" and DOCTYPE_REFUSED in text


MALFORMED = {
    "10,000-deep nesting": (legacy("<n:ServiceName>" + "<x>" * 10_000 + "</x>" * 10_000 + "</n:ServiceName>"), "s:Client", "nested too deeply"),
    "invalid UTF-8": (legacy("<n:ServiceName>fast1</n:ServiceName>").replace(b"fast1", b"fa\xff\xfest1"), "s:Client", "encoding"),
    "not XML at all": (b"hello", "s:Client", "cannot be read"),
    "JSON": (b'{"serviceName": "x"}', "s:Client", "cannot be read"),
    "empty body": (b"", "s:Client", "cannot be read"),
    "truncated": (envelopes.go_to_state(envelopes.VALID)[:-30], "s:Client", "not well-formed"),
    "control character": (legacy("<n:ServiceName>fa&#1;st</n:ServiceName>"), "s:Client", "not well-formed"),
    "SOAP 1.2 envelope": (
        envelopes.go_to_state(envelopes.VALID).replace(ns.SOAP_ENV.encode(), ns.SOAP12_ENV.encode()),
        "s:VersionMismatch", "SOAP 1.2",
    ),
    "no envelope": (f'<v2:GoToState xmlns:v2="{ns.V2}"/>'.encode(), "s:VersionMismatch", "Envelope"),
    "two operations in the body": (
        envelopes.go_to_state(envelopes.VALID).replace(b"</s:Body>", b"<v2:GoToState/></s:Body>"), "s:Client", "exactly one"
    ),
    "an unknown operation": (envelopes.envelope("", "<v2:GoToStates/>").encode(), "s:Client", "not an operation"),
    "a wrong namespace": (legacy(f'<ServiceName xmlns="{ns.V2}">fast1</ServiceName>'), "a:DeserializationFailed", "wrong namespace"),
    "an unknown element": (legacy("<n:ServiceNam>fast1</n:ServiceNam>"), "a:DeserializationFailed", "ServiceNam"),
    "a duplicate element": (legacy("<n:ServiceName>a</n:ServiceName><n:ServiceName>b</n:ServiceName>"), "a:DeserializationFailed", "appears twice"),
    "out of order": (
        envelopes.go_to_state({"StateName": "s", "ServiceName": "x", "ServicePlan": "p", "MdnZipCode": "1"}).replace(
            b"<n:ServiceName>x</n:ServiceName><n:StateName>s</n:StateName>", b"<n:StateName>s</n:StateName><n:ServiceName>x</n:ServiceName>"
        ),
        "a:DeserializationFailed", "out of order",
    ),
    "elements inside a text field": (legacy("<n:ServiceName><n:x/></n:ServiceName>"), "a:DeserializationFailed", "holds text"),
    "a 5 MB text node": (legacy("<n:ServiceName>" + "x" * 5_000_000 + "</n:ServiceName>"), "a:DeserializationFailed", "characters long"),
    "a SOAP 1.1 header with a duplicate token": (
        envelopes.go_to_state(envelopes.VALID, header="<v2:token>a</v2:token><v2:token>b</v2:token>"),
        "a:DeserializationFailed", "twice",
    ),
    "missing token": (envelopes.go_to_state(envelopes.VALID, token=None), "s:Client", "token"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_requests_get_a_clear_fault(served_gateway, upstream, case):
    body, expected_code, phrase = MALFORMED[case]
    code, text = fault_of(post(served_gateway, body))
    assert code == expected_code
    assert phrase in text
    assert upstream.requests() == []


def _device(kind="IMEI", value="990000862471854"):
    return {"xml": envelopes.devices_xml([[(kind, value)]])}


RULES_BROKEN = {
    "DeviceList with a filter": ({"DeviceList": _device(), "AccountNameFilter": "1"}, "DeviceList"),
    "neither DeviceList nor a filter": ({}, "DeviceList"),
    "service plan filter without account": ({"DeviceServicePlanFilter": "p"}, "DeviceServicePlanFilter"),
    "custom field filter without account": (
        {"DeviceCustomFieldFilter": {"xml": envelopes.pairs_xml("CustomFieldFilterObject", [("CustomField1", "a")])}},
        "DeviceCustomFieldFilter",
    ),
    "custom field name": ({"DeviceList": _device(), "CustomFields": {"xml": envelopes.pairs_xml("CustomField", [("Field9", "a")])}}, "CustomFields/CustomField[1]/Name"),
    "custom field value character": ({"DeviceList": _device(), "CustomFields": {"xml": envelopes.pairs_xml("CustomField", [("CustomField1", "a;b")])}}, "CustomFields/CustomField[1]/Value"),
    "no ServiceName": ({"DeviceList": _device(), "ServiceName": None}, "ServiceName"),
    "no StateName": ({"DeviceList": _device(), "StateName": None}, "StateName"),
    "no ServicePlan": ({"DeviceList": _device(), "ServicePlan": None}, "ServicePlan"),
    "10,001 devices": ({"DeviceList": {"xml": envelopes.devices_xml([[("IMEI", str(n))] for n in range(10_001)])}}, "DeviceList"),
    "SkuNumber of 21": ({"DeviceList": _device(), "SkuNumber": "S" * 21}, "SkuNumber"),
    "unknown kind": ({"DeviceList": _device(kind="IMSI")}, "DeviceList/DeviceIdentifierCollection[1]/DeviceIdentifiers/DeviceIdentifier[1]/Kind"),
    "PublicIPRestriction": ({"DeviceList": _device(), "PublicIPRestriction": "open"}, "PublicIPRestriction"),
    "no MdnZipCode and no default": ({"DeviceList": _device(), "MdnZipCode": None}, "MdnZipCode"),
}


@pytest.mark.parametrize("case", list(RULES_BROKEN))
def test_every_legacy_rule_broken_is_a_client_fault_naming_the_field(served_gateway, upstream, case):
    changes, field = RULES_BROKEN[case]
    fields = {key: value for key, value in {**envelopes.VALID, **changes}.items() if value is not None}
    code, text = fault_of(post(served_gateway, envelopes.go_to_state(fields)))
    assert code == "s:Client"
    assert text.startswith(f"{field}:")
    assert upstream.requests() == []


# -- size: refused before the body is read whole ---------------------------


def _raw_post(gateway, head, chunks):
    """Send ``head``, then ``chunks`` until the server answers: (its status line, bytes sent by then)."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as raw:
        answer = []
        reader = threading.Thread(target=lambda: answer.append(raw.recv(65536)), daemon=True)
        raw.sendall(head)
        reader.start()
        sent = 0
        for chunk in chunks:
            if answer:
                break  # answered: the server refused before the body was complete
            try:
                raw.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        reader.join(30)
    return answer[0].split(b"\r\n", 1)[0].decode(), sent


FIFTY_MB = 50 * 1024 * 1024


@pytest.mark.process
def test_a_50_mb_body_with_content_length_is_refused_unread(small_gateway, upstream):
    head = (
        f"POST /api/v2/StateService.svc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {FIFTY_MB}\r\n\r\n"
    ).encode()
    status, _ = _raw_post(small_gateway, head, [])  # not one byte of the body sent
    assert status.startswith("HTTP/1.1 413")
    assert upstream.requests() == []


@pytest.mark.process
def test_a_50_mb_chunked_body_is_refused_after_the_limit(small_gateway, upstream):
    head = b"POST /api/v2/StateService.svc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n"
    block = b"<" * 65536
    chunk = f"{len(block):x}\r\n".encode() + block + b"\r\n"
    status, sent = _raw_post(small_gateway, head, (chunk for _ in range(FIFTY_MB // len(block))))
    assert status.startswith("HTTP/1.1 413")
    assert sent < 16 * (1 << 20), "the gateway answered only after reading far past its limit"
    assert upstream.requests() == []


def test_a_10000_device_request_fits_the_default_limit(gateway, upstream):
    devices = [[("IMEI", f"99000086{n:07d}"), ("ICCID", f"891480000008{n:08d}")] for n in range(10_000)]
    body = envelopes.go_to_state({**envelopes.VALID, "DeviceList": {"xml": envelopes.devices_xml(devices)}}, token="bad")
    assert len(body) > 3_000_000
    answer = post(gateway, body)
    # It parses and translates; ThingSpace then refuses the made-up session.
    assert fault_of(answer) == ("UnifiedWebService.REQUEST_FAILED.SessionToken.Invalid", "The session has expired.")
    (record,) = upstream.requests("/api/m2m/v1/devices/actions/goToState")
    assert len(record["json"]["devices"]) == 10_000


# -- the gateway after all of it -------------------------------------------


def _rss_kb(process):
    """Resident memory of the gateway: gunicorn's master and its workers."""
    total = 0
    for pid in process.pids():
        total += next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return total


def test_memory_stays_bounded_and_the_gateway_keeps_serving(gateway, upstream, trap):
    def corpus():
        yield from (case.encode() for case in doctype_cases(trap.url).values())
        yield from (body for body, _, _ in MALFORMED.values())

    for body in corpus():  # warm up: first-use allocations are not growth
        post(gateway, body)
    before = _rss_kb(gateway)
    deadline = time.monotonic() + 60
    for _ in range(3):
        for body in corpus():
            assert post(gateway, body).status_code in (413, 500)
        assert time.monotonic() < deadline
    growth_mb = (_rss_kb(gateway) - before) / 1024
    assert growth_mb < 50, f"the gateway grew by {growth_mb:.0f} MB over the corpus"
    login = post(
        gateway,
        envelopes.envelope(
            "", f'<v2:LogIn><v2:Input xmlns:a="{ns.SESSION}"><a:Username>demo</a:Username><a:Password>demo-password</a:Password></v2:Input></v2:LogIn>'
        ).encode(),
        service="SessionService",
    )
    assert login.status_code == 200 and "<a:SessionToken>" in login.text
    assert upstream.requests("/api/m2m/v1/devices/actions/goToState") == []
