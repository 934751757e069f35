"""Clients that trickle their requests cannot starve `serve`, directly or through the shipped nginx site."""

import contextlib
import re
import socket
import threading
import time

import pytest
import requests

from gateway import ns
from gateway.server import MAX_CONNECTIONS
from gateway.whole_requests import Refused, RequestFramer
from tests import envelopes
from tests.conftest import Gateway

SLOW_CLIENTS = 50
# Each slow client says it will send this much and sends a byte at a time.
DECLARED_BYTES = 100_000
TRICKLE_EVERY_S = 0.2
ANSWER_WITHIN_S = 1.0


class Tricklers:
    """``count`` connections that send a POST's headers, then a byte of its body every TRICKLE_EVERY_S."""

    def __init__(self, port, path, count=SLOW_CLIENTS, for_s=10, tls=None):
        """``tls``: an SSLContext for a server that speaks TLS."""
        self.sockets = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
                f"Content-Length: {DECLARED_BYTES}\r\n\r\n<".encode()
            )
            self.sockets.append(sock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, args=(for_s,), daemon=True)
        self._thread.start()

    def _trickle(self, for_s):
        deadline = time.monotonic() + for_s
        while not self._stop.wait(TRICKLE_EVERY_S) and time.monotonic() < deadline:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.send(b" ")

    def close(self):
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            sock.close()


def _log_in(service_url):
    login = requests.post(
        service_url("SessionService"),
        data=envelopes.envelope(
            "",
            f'<v2:LogIn><v2:Input xmlns:a="{ns.SESSION}"><a:Username>demo</a:Username>'
            "<a:Password>demo-password</a:Password></v2:Input></v2:LogIn>",
        ).encode(),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
        timeout=10,
    )
    return re.search(r"<a:SessionToken>([^<]+)</a:SessionToken>", login.text).group(1)


def _go_to_state(service_url, token):
    devices = envelopes.devices_xml([[("IMEI", "990000862471854")]])
    return requests.post(
        service_url("StateService"),
        data=envelopes.go_to_state({**envelopes.VALID, "DeviceList": {"xml": devices}}, token=token),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
        timeout=10,
    )


def assert_others_answered_while_trickled(port, service_url, path="/api/v2/StateService.svc", tls=None):
    """50 trickling bodies to ``path`` at ``port``: ?wsdl and a GoToState still answer within a second."""
    token = _log_in(service_url)
    tricklers = Tricklers(port, path, tls=tls)
    try:
        time.sleep(TRICKLE_EVERY_S * 3)  # every slow client has sent its headers and some of its body
        for _ in range(3):
            started = time.monotonic()
            wsdl = requests.get(service_url("StateService") + "?wsdl", timeout=10)
            wsdl_s = time.monotonic() - started
            started = time.monotonic()
            answer = _go_to_state(service_url, token)
            go_to_state_s = time.monotonic() - started
            assert wsdl.status_code == 200 and b"definitions" in wsdl.content
            assert answer.status_code == 200 and "RequestId" in answer.text, answer.text
            assert wsdl_s < ANSWER_WITHIN_S and go_to_state_s < ANSWER_WITHIN_S, (wsdl_s, go_to_state_s)
    finally:
        tricklers.close()


def test_slow_bodies_do_not_starve_serve_on_its_defaults(tmp_path, simulator):
    gateway = Gateway(tmp_path, simulator.url, server_workers=2)  # the default: Gateway asks for 1
    try:
        gateway.start()
        assert_others_answered_while_trickled(gateway.port, gateway.service_url)
    finally:
        gateway.stop()


def test_a_slow_client_is_cut_off_after_the_read_timeout(tmp_path, simulator):
    gateway = Gateway(tmp_path, simulator.url, server_read_timeout_s=1)
    try:
        gateway.start()
        tricklers = Tricklers(gateway.port, "/api/v2/StateService.svc", count=3, for_s=10)
        silent = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)  # sends nothing at all
        try:
            started = time.monotonic()
            answers = [_read_until_closed(sock, timeout_s=5) for sock in [*tricklers.sockets, silent]]
            cut_off_s = time.monotonic() - started
        finally:
            tricklers.close()
            silent.close()
    finally:
        gateway.stop()
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), answers
    assert cut_off_s < 3, f"cut off after {cut_off_s:.1f} s, the bound being 1 s (checked every second)"


def test_past_its_connections_a_worker_answers_503_at_once_and_recovers(gateway):
    """The shared gateway has one worker: MAX_CONNECTIONS idle connections fill it."""
    idle = []
    try:
        for _ in range(MAX_CONNECTIONS):
            idle.append(socket.create_connection(("127.0.0.1", gateway.port), timeout=5))
        # Accepted after all of them (the backlog is first in, first out).
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as extra:
            answer = _read_until_closed(extra, timeout_s=5)
    finally:
        for sock in idle:
            sock.close()
    assert answer.startswith(b"HTTP/1.1 503 "), answer
    wait_until_answered = time.monotonic() + 10
    while requests.get(gateway.url + "/healthz", timeout=10).status_code != 200:
        assert time.monotonic() < wait_until_answered
        time.sleep(0.05)


def test_a_client_expecting_100_continue_gets_it_once_and_its_answer(gateway):
    body = envelopes.envelope("", "<v2:Echo/>").encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/v2/SessionService.svc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
            f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = _read_until_closed(sock, timeout_s=10)
    assert not answer.startswith(b"HTTP/1.1 100"), answer[:200]
    assert re.match(rb"HTTP/1\.1 (200|500) ", answer), answer[:200]


def test_a_chunked_body_is_received_whole(gateway):
    body = envelopes.envelope("", "<v2:Echo/>").encode()
    chunks = iter([body[:10], body[10:]])
    answer = requests.post(
        gateway.service_url("SessionService"),
        data=chunks,  # a generator: requests sends it chunked
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
        timeout=10,
    )
    assert answer.status_code in (200, 500) and b"Envelope" in answer.content


def _read_until_closed(sock, timeout_s):
    sock.settimeout(timeout_s)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


# -- where a request ends: in process ------------------------------------------------


def _framed(*parts, max_body_bytes=1000):
    framer, received = RequestFramer(max_body_bytes), bytearray()
    ends = []
    for part in parts:
        received += part
        ends.append(framer.feed(received))
    return ends


def test_a_request_ends_after_its_content_length():
    head = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"
    assert _framed(head[:10], head[10:], b"12", b"345") == [None, None, None, len(head) + 5]
    assert _framed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET") == [len(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")]


def test_a_chunked_request_ends_after_its_last_chunk_and_trailers():
    head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n"
    whole = head + body
    ends = _framed(whole[:len(head)], *(whole[n:n + 1] for n in range(len(head), len(whole))))
    assert ends[-1] == len(whole) and set(ends[:-1]) == {None}
    with_trailer = head + b"1\r\na\r\n0\r\nX-Sum: 1\r\n\r\nNEXT"
    assert _framed(with_trailer) == [len(with_trailer) - 4]


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n", 413),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 70_000, 431),
    ],
)
def test_a_request_over_a_bound_is_refused_before_it_is_read(request_bytes, status):
    with pytest.raises(Refused) as refused:
        _framed(request_bytes)
    assert refused.value.status == status
