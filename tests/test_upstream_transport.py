"""How the gateway reaches ThingSpace: TLS verified, through the environment's proxy,
one kept-alive connection, and a connection ThingSpace closed while idle replaced, not failed.

The real ThingSpace client against a real HTTP/1.1 server on 127.0.0.1 (TLS from a
private CA where it says so) and a real CONNECT/forwarding proxy.
"""

import http.server
import json
import select
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

import pytest

from gateway import config, outbound
from gateway.exceptions import ConfigError, UpstreamUnavailable
from gateway.thingspace import GO_TO_STATE_PATH, TOKEN_PATH, ThingSpace
from tests.certificates import Authority

BODY = {"devices": [{"deviceIds": [{"kind": "imei", "id": "990000862471854"}]}], "serviceName": "s", "stateName": "t"}


class ThingSpaceStub:
    """Answers the token and goToState calls over HTTP/1.1, keeping connections alive
    unless ``close_after_answer``: then it closes each one after its answer without
    saying so (no ``Connection: close``), as a server whose idle timeout ran out."""

    def __init__(self, tls=None, close_after_answer=False):
        self.requests = []  # (method, path, connection number)
        self.targets = []  # each request line's target as sent: absolute-form through a forwarding proxy
        self.closed = 0  # connections this server has closed
        self._lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with stub._lock:
                    self.number = stub.connections = getattr(stub, "connections", 0) + 1

            def _answer(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = urlsplit(self.path).path  # absolute-form from a forwarding proxy
                with stub._lock:
                    stub.requests.append((self.command, path, self.number))
                    stub.targets.append(self.path)
                    count = len(stub.requests)
                body = json.dumps({"access_token": "b", "expires_in": 3600} if path == TOKEN_PATH else {"requestId": f"r-{count}"})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())
                self.close_connection = close_after_answer

            do_POST = do_PUT = _answer

            def finish(self):
                super().finish()
                self.connection.close()
                with stub._lock:
                    stub.closed += 1

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


class Proxy:
    """An HTTP proxy: CONNECT tunnels, and forwards absolute-form requests; records each request line."""

    def __init__(self):
        self.request_lines = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        serve_each_connection(self._listener, self._serve)

    def _serve(self, client):
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            line = head.split(b"\r\n", 1)[0].decode()
            self.request_lines.append(line)
            method, target, _ = line.split(" ")
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)))
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                head = b""
            else:
                upstream = socket.create_connection((urlsplit(target).hostname, urlsplit(target).port))
            with upstream:
                upstream.sendall(head)
                _relay(client, upstream)

    def close(self):
        self._listener.close()


def serve_each_connection(listener, serve):
    """Calls ``serve(client socket)`` in a thread of its own for each connection ``listener`` accepts, until it is closed."""

    def accept():
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def _relay(a, b):
    peers = {a: b, b: a}
    while True:
        readable, _, _ = select.select(list(peers), [], [], 5)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            peers[sock].sendall(data)


@pytest.fixture
def environment(monkeypatch):
    """No proxy and no CA bundle from the test's own environment; the gateway reads it anew."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
                 "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    outbound.proxies.cache_clear()
    yield monkeypatch
    outbound.proxies.cache_clear()


@pytest.fixture
def private_ca(tmp_path):
    return Authority(tmp_path, "thingspace")


def tls_stub(ca):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*ca.issue("thingspace"))
    return ThingSpaceStub(tls=context)


def thingspace(url, **settings):
    environ = {"M2MGW_UPSTREAM_BASE_URL": url, "M2MGW_UPSTREAM_TIMEOUT_S": "5"}
    environ.update({f"M2MGW_UPSTREAM_{name.upper()}": value for name, value in settings.items()})
    return ThingSpace(config.load(environ=environ).upstream)


@pytest.fixture
def closing():
    things = []
    yield things.append
    for thing in things:
        thing.close()


def test_thingspace_on_a_private_ca_is_reached_with_requests_ca_bundle(environment, private_ca, closing):
    stub = tls_stub(private_ca)
    closing(stub)
    environment.setenv("REQUESTS_CA_BUNDLE", str(private_ca.certificate_file))
    assert thingspace(stub.url).go_to_state("s", BODY) == "r-2"
    assert [path for _, path, _ in stub.requests] == [TOKEN_PATH, GO_TO_STATE_PATH]


def test_a_certificate_from_an_unknown_ca_is_refused_before_anything_is_sent(environment, private_ca, closing):
    stub = tls_stub(private_ca)
    closing(stub)
    with pytest.raises(UpstreamUnavailable, match=r"^ThingSpace could not be reached \(TLS: .*certificate"):
        thingspace(stub.url).go_to_state("s", BODY)
    assert stub.requests == []


def test_verify_tls_false_accepts_any_certificate(environment, private_ca, closing):
    stub = tls_stub(private_ca)
    closing(stub)
    assert thingspace(stub.url, verify_tls="false").go_to_state("s", BODY) == "r-2"


def test_https_goes_through_the_environments_proxy_in_a_connect_tunnel(environment, private_ca, closing):
    stub, proxy = tls_stub(private_ca), Proxy()
    closing(stub)
    closing(proxy)
    environment.setenv("REQUESTS_CA_BUNDLE", str(private_ca.certificate_file))
    environment.setenv("HTTPS_PROXY", proxy.url)
    assert thingspace(stub.url).go_to_state("s", BODY) == "r-2"
    # HTTP/1.0 from Python 3.11's http.client, 1.1 from later ones
    assert [line.rsplit(" ", 1)[0] for line in proxy.request_lines] == [f"CONNECT 127.0.0.1:{urlsplit(stub.url).port}"]


def test_http_is_forwarded_by_the_environments_proxy_unless_no_proxy_names_the_host(environment, closing):
    stub, proxy = ThingSpaceStub(), Proxy()
    closing(stub)
    closing(proxy)
    environment.setenv("HTTP_PROXY", proxy.url)
    assert thingspace(stub.url).go_to_state("s", BODY) == "r-2"
    assert proxy.request_lines == [f"POST {stub.url}{TOKEN_PATH} HTTP/1.1"]  # then kept alive
    assert stub.targets == [stub.url + TOKEN_PATH, stub.url + GO_TO_STATE_PATH]

    environment.setenv("NO_PROXY", "127.0.0.1")
    outbound.proxies.cache_clear()
    assert thingspace(stub.url).go_to_state("s", BODY) == "r-4"
    assert len(proxy.request_lines) == 1
    assert stub.targets[2:] == [TOKEN_PATH, GO_TO_STATE_PATH]


def test_calls_share_one_kept_alive_connection(environment, closing):
    stub = ThingSpaceStub()
    closing(stub)
    client = thingspace(stub.url)
    assert [client.go_to_state("s", BODY) for _ in range(3)] == ["r-2", "r-3", "r-4"]
    assert {number for _, _, number in stub.requests} == {1}


def test_a_connection_thingspace_closed_while_idle_is_replaced_and_nothing_is_sent_twice(environment, closing):
    stub = ThingSpaceStub(close_after_answer=True)
    closing(stub)
    client = thingspace(stub.url)
    client.bearer()
    wait_until(lambda: stub.closed == 1)
    for call in range(1, 4):
        client.go_to_state("s", BODY)
        wait_until(lambda: stub.closed == 1 + call)
    assert [(path, number) for _, path, number in stub.requests] == [
        (TOKEN_PATH, 1), (GO_TO_STATE_PATH, 2), (GO_TO_STATE_PATH, 3), (GO_TO_STATE_PATH, 4)
    ]


def wait_until(condition, timeout_s=5):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the stub did not close the connection"
        time.sleep(0.01)


def test_an_https_proxy_is_refused_at_start_naming_the_setting(environment):
    environment.setenv("HTTPS_PROXY", "https://proxy.example:3128")
    with pytest.raises(ConfigError, match=r"^\[upstream\] base_url: its proxy must be an http:// one, not https://"):
        thingspace("https://thingspace.example")
