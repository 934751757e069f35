"""The outbound clients' HTTP/1.1 exchange (gateway/http1.py) against a real server on 127.0.0.1
that answers with scripted bytes: every framing an answer may have, the answers to refuse, and
when the kept-alive connection may carry the next request. Each test runs twice: with the
threads' client (``outbound.KeptAlive``, its socket driving the reader) and with the event
loop's (``outbound.KeptAliveOnLoop``, asyncio's streams driving the same reader).
"""

import asyncio
import contextlib
import itertools
import socket
import threading
import time

import pytest

from gateway import http1, outbound
from gateway.exceptions import ExchangeFailed
from tests.test_upstream_transport import environment, serve_each_connection  # noqa: F401  (environment: a fixture)

pytestmark = pytest.mark.usefixtures("environment")

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class ScriptedServer:
    """Answers the n-th request it receives with ``answers[n]``: bytes sent as they are (then
    the connection kept open), or a function given the socket. Records every request
    received whole, with the number of the connection it came on."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []  # (connection number, head, body)
        self.send_failed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._connections = itertools.count(1)
        serve_each_connection(self._listener, self._serve)

    def _serve(self, client):
        number = next(self._connections)
        with client:
            received = b""
            while True:
                while b"\r\n\r\n" not in received:
                    data = client.recv(65536)
                    if not data:
                        return
                    received += data
                head, received = received.split(b"\r\n\r\n", 1)
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
                while len(received) < length:
                    received += client.recv(65536)
                body, received = received[:length], received[length:]
                self.requests.append((number, head.decode("latin-1"), body))
                answer = self.answers[len(self.requests) - 1]
                try:
                    if callable(answer):
                        answer(client)
                    else:
                        client.sendall(answer)
                except OSError:
                    self.send_failed.set()
                    return

    def close(self):
        self._listener.close()


def closes_after(data):
    """An answer: ``data``, then the connection closed."""

    def answer(client):
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)

    return answer


class OnLoop:
    """``outbound.KeptAliveOnLoop`` called from the test's thread: its requests run on an
    event loop in a thread of its own, as the delivery worker's do."""

    def __init__(self, base_url, timeout_s):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._client = outbound.KeptAliveOnLoop(base_url, timeout_s)

    def request(self, method, path, body, headers):
        return asyncio.run_coroutine_threadsafe(self._client.request(method, path, body, headers), self._loop).result()

    def close(self):
        self._loop.call_soon_threadsafe(self._client.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


@pytest.fixture(params=[outbound.KeptAlive, OnLoop], ids=["threads", "event loop"])
def client_of(request):
    """Makes the client of a base URL and a timeout, each kind in turn; closes those on an event loop."""
    made = []

    def client(base_url, timeout_s):
        made.append(request.param(base_url, timeout_s=timeout_s))
        return made[-1]

    yield client
    for client in made:
        if isinstance(client, OnLoop):
            client.close()


@pytest.fixture
def serve(client_of):
    servers = []

    def start(*answers):
        servers.append(ScriptedServer(answers))
        return servers[-1], client_of(servers[-1].url, timeout_s=5)

    yield start
    for server in servers:
        server.close()


def connections(server):
    return [number for number, _, _ in server.requests]


def test_the_request_goes_out_as_one_http11_message_with_its_body(serve):
    server, client = serve(OK)
    assert client.request("PUT", "/api/x?y=1", b'{"a":1}', {"Authorization": "Bearer b", "Content-Type": "application/json"}) == (200, b"{}")
    (_, head, body), = server.requests
    assert head.split("\r\n") == [
        "PUT /api/x?y=1 HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        "Accept-Encoding: identity",
        "Authorization: Bearer b",
        "Content-Type: application/json",
        "Content-Length: 7",
    ]
    assert body == b'{"a":1}'


def test_a_chunked_answer_is_read_whole_and_the_connection_kept(serve):
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\n{\"re\r\nA;name=value\r\nquestId\":\"\r\n2\r\nr\"\r\n1\r\n}\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    server, client = serve(chunked, OK)
    assert client.request("GET", "/", None, {}) == (200, b'{"requestId":"r"}')
    assert client.request("GET", "/", None, {}) == (200, b"{}")
    assert connections(server) == [1, 1]


def test_a_body_of_many_small_chunks_is_no_long_head(serve):
    data = bytes(97 + n % 26 for n in range(30_000))  # 30,000 chunk lines: 150 KB of them
    chunks = b"".join(b"1\r\n" + data[n : n + 1] + b"\r\n" for n in range(len(data)))
    server, client = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
    assert client.request("GET", "/", None, {}) == (200, data)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra",  # more than its answer
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    ],
    ids=["connection-close", "close-among-tokens", "http10", "http10-keep-alive", "extra-bytes", "length-and-chunked"],
)
def test_a_connection_that_cannot_carry_another_request_is_replaced(serve, answer):
    server, client = serve(answer, OK)
    assert client.request("POST", "/", b"1", {}) == (200, b"{}")
    assert client.request("POST", "/", b"2", {}) == (200, b"{}")
    assert connections(server) == [1, 2]
    assert [body for _, _, body in server.requests] == [b"1", b"2"]


def test_a_connection_the_server_sent_more_on_after_its_answer_is_replaced(serve):
    def answer_then_more(client):
        client.sendall(OK)
        time.sleep(0.1)  # after the client has read the answer whole
        client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nunasked")
        with contextlib.suppress(ConnectionResetError):  # the client drops it, unread: a reset
            while client.recv(65536):
                pass

    server, client = serve(answer_then_more, OK)
    assert client.request("POST", "/", b"1", {}) == (200, b"{}")
    time.sleep(0.3)
    assert client.request("POST", "/", b"2", {}) == (200, b"{}")
    assert connections(server) == [1, 2]


def test_a_body_without_length_ends_with_the_connection(serve):
    server, client = serve(closes_after(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 200_000), OK)
    assert client.request("GET", "/", None, {}) == (200, b"x" * 200_000)
    assert client.request("GET", "/", None, {}) == (200, b"{}")
    assert connections(server) == [1, 2]


@pytest.mark.parametrize(
    "method, answer",
    [
        ("POST", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 120\r\n\r\n"),
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 120\r\n\r\n"),
    ],
)
def test_answers_without_a_body_keep_the_connection(serve, method, answer):
    server, client = serve(answer, OK)
    assert client.request(method, "/", None, {}) == (int(answer[9:12]), b"")
    assert client.request("GET", "/", None, {}) == (200, b"{}")
    assert connections(server) == [1, 1]


def test_interim_answers_are_skipped(serve):
    server, client = serve(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK)
    assert client.request("POST", "/", b"1", {}) == (200, b"{}")


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"a\":",  # in the body
        b"HTTP/1.1 200 OK\r\nContent-Le",  # in the head
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"a\":",  # in a chunk
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",  # before the last chunk
        b"",  # before anything
        b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999999\r\n\r\n{}",  # long before the length it announced
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\n{}",
    ],
    ids=["body", "head", "chunk", "last-chunk", "nothing", "announced-petabyte", "announced-petabyte-chunk"],
)
def test_a_server_closing_mid_answer_is_a_failed_exchange_not_sent_again(serve, answer):
    server, client = serve(closes_after(answer), OK)
    with pytest.raises(ExchangeFailed) as failed:
        client.request("POST", "/", b"1", {})
    assert not failed.value.timed_out
    assert client.request("POST", "/", b"2", {}) == (200, b"{}")  # on a new connection
    assert [(number, body) for number, _, body in server.requests] == [(1, b"1"), (2, b"2")]


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"ICY 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n folded\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\n{}",
        closes_after(b"HTTP/1.1 200 OK\nContent-Length: 2\n\n{}"),  # else it would wait for a CRLF
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{}\r\n0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
    ],
    ids=["http2", "not-http", "short-status", "folded", "space-before-colon", "bare-lf", "lengths-differ",
         "negative-length", "gzip-coding", "bad-chunk-size", "chunk-longer-than-size", "upgrade"],
)
def test_a_malformed_answer_is_a_failed_exchange_and_its_connection_dropped(serve, answer):
    server, client = serve(answer, OK)
    with pytest.raises(ExchangeFailed) as failed:
        client.request("POST", "/", b"1", {})
    assert not failed.value.timed_out
    assert client.request("POST", "/", b"2", {}) == (200, b"{}")
    assert connections(server) == [1, 2]


def test_a_repeated_equal_content_length_is_one_length(serve):
    server, client = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}")
    assert client.request("GET", "/", None, {}) == (200, b"{}")


def endless(start, line):
    """An answer: ``start``, then ``line`` over and over, 64 MB: more than the kernel's buffers on both sides hold."""

    def answer(client):
        client.sendall(start)
        for _ in range(64 * 1024 * 1024 // len(line)):
            client.sendall(line)

    return answer


@pytest.mark.parametrize(
    "answer",
    [
        endless(b"HTTP/1.1 200 OK\r\n", b"X-Filler: " + b"f" * 1000 + b"\r\n"),
        endless(b"HTTP/1.1 200 OK\r\nX-Filler: ", b"f" * 1000),
        endless(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n", b"X-Trailer: " + b"t" * 1000 + b"\r\n"),
        endless(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;", b"x" * 1000),
    ],
    ids=["head-lines", "head-line", "trailer-lines", "chunk-size-line"],
)
def test_an_endless_head_is_refused_not_buffered(serve, answer):
    server, client = serve(answer)
    with pytest.raises(ExchangeFailed) as failed:
        client.request("GET", "/", None, {})
    assert not failed.value.timed_out
    # The client stopped reading and closed: the server could not send it all.
    assert server.send_failed.wait(10)


def test_a_head_of_the_largest_size_taken_is_read(serve):
    filler = b"X-Filler: " + b"f" * (http1.MAX_HEAD_BYTES - 200) + b"\r\n"
    server, client = serve(b"HTTP/1.1 200 OK\r\n" + filler + b"Content-Length: 2\r\n\r\n{}")
    assert client.request("GET", "/", None, {}) == (200, b"{}")


@pytest.mark.parametrize(
    "path, headers",
    [
        ("/a b", {}),
        ("/a\r\nX-Injected: 1", {}),
        ("/", {"VZ-M2M-Token": "s\r\nX-Injected: 1"}),
        ("/", {"VZ-M2M-Token": "s\nX-Injected: 1"}),
        ("/", {"X-Injected: 1\r\nVZ-M2M-Token": "s"}),
    ],
)
def test_a_target_or_header_that_would_break_the_message_is_refused_before_connecting(serve, path, headers):
    server, client = serve(OK)
    with pytest.raises(ValueError):
        client.request("GET", path, None, headers)
    assert client.request("GET", "/", None, {}) == (200, b"{}")
    assert len(server.requests) == 1


def test_a_server_that_does_not_answer_in_time_is_a_timed_out_exchange(client_of):
    server = ScriptedServer([lambda client: client.recv(1)])  # holds the connection, never answers
    try:
        with pytest.raises(ExchangeFailed) as failed:
            client_of(server.url, timeout_s=0.3).request("GET", "/", None, {})
        assert failed.value.timed_out
    finally:
        server.close()
