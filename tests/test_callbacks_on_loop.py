"""Callbacks under gunicorn: received on the worker's event loop, answered by the thread that commits.

A real ``m2m-gateway serve`` process, posted to over real sockets: the
answers, the HTTP of kept-alive, HTTP/1.0, chunked, ``Expect`` and pipelined
requests, the client's address behind a trusted proxy, the request id and
the access line, and the 503 while the store cannot commit.
"""

import concurrent.futures
import http.client
import json
import os
import signal
import socket
import time

import pytest
import requests

from gateway.store import PostgresStore, SqliteStore
from tests.conftest import Gateway, Listener
from tests.test_callbacks import ACCOUNT, THINGSPACE_PASSWORD, bridge, rest_callback
from tests.test_delivery_faults import delivered_request_ids, wait_until
from tests.test_store_outages import postgres, readiness, register_listener  # noqa: F401 - postgres: a fixture

pytestmark = pytest.mark.process

PATH = f"/callbacks/thingspace/{ACCOUNT}/StateService"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, simulator):
    """One gateway process for the module, behind a trusted proxy (127.0.0.1), taking callbacks
    from 127.0.0.1 and 10.1.0.0/16; its listener as ``gateway.listener``."""
    directory = tmp_path_factory.mktemp("callbacks-on-loop")
    listener = Listener()
    register_listener(SqliteStore(directory / "gateway.sqlite3"), listener)
    process = bridge(
        directory,
        simulator,
        Gateway,
        server_trusted_proxies="127.0.0.1/32",
        callbacks_allowed_sources="127.0.0.1/32, 10.1.0.0/16",
    ).start()
    process.listener, process.store_path = listener, directory / "gateway.sqlite3"
    try:
        wait_until(lambda: readiness(process)[0] == 200, what="readiness")
        yield process
    finally:
        process.stop()
        listener.close()


def body_of(request_id, password=THINGSPACE_PASSWORD, state_name="new active"):
    body = rest_callback(request_id, "990000862471854", password=password)
    body["deviceResponse"]["goToStateResponse"]["stateName"] = state_name
    return json.dumps(body).encode()


def stored_request_ids(gateway, *request_ids):
    store = SqliteStore(gateway.store_path)
    try:
        return [request_id for request_id in request_ids if store.request_callbacks(request_id)]
    finally:
        store.close()


def connect(gateway):
    return socket.create_connection(("127.0.0.1", gateway.port), timeout=10)


def answer_on(sock, method="POST"):
    """The next answer on ``sock``: (status, headers, body)."""
    answer = http.client.HTTPResponse(sock, method=method)
    answer.begin()
    return answer.status, answer.headers, answer.read()


def request(body, *, version="HTTP/1.1", headers=()):
    head = [f"POST {PATH} {version}", "Host: 127.0.0.1", "Content-Type: application/json", *headers]
    return ("\r\n".join(head) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def test_a_burst_is_answered_once_each_callback_is_committed_and_each_is_delivered_once(gateway):
    request_ids = [f"r-burst-{n}" for n in range(300)]

    def post_all(share):
        with requests.Session() as session:  # kept alive: the requests after the first are read on its connection
            return [
                session.post(gateway.url + PATH, data=body_of(r), headers={"X-Request-Id": f"id-{r}"}, timeout=10)
                for r in share
            ]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = [answer for share in pool.map(post_all, [request_ids[n::8] for n in range(8)]) for answer in share]
    assert [(answer.status_code, answer.json()) for answer in answers] == [(200, {"message": "stored"})] * 300
    assert {answer.headers["X-Request-Id"] for answer in answers} == {f"id-{r}" for r in request_ids}
    assert {answer.headers["Content-Type"] for answer in answers} == {"application/json"}
    assert stored_request_ids(gateway, *request_ids) == request_ids  # committed before the 2xx
    wait_until(lambda: len(set(delivered_request_ids(gateway.listener)) & set(request_ids)) == 300, what="deliveries")
    assert sorted(r for r in delivered_request_ids(gateway.listener) if r in request_ids) == sorted(request_ids)
    # The access line of each, with its request id.
    wait_until(lambda: f"[id-r-burst-299] POST {PATH} 200" in gateway.log(), what="the access line")


def test_requests_on_one_kept_alive_connection_are_each_answered_and_http_1_0_closes_it(gateway):
    with connect(gateway) as sock:
        sock.sendall(request(body_of("r-kept-0")))
        status, headers, body = answer_on(sock)
        assert (status, headers["Connection"], json.loads(body)) == (200, "keep-alive", {"message": "stored"})
        assert headers["Date"] and headers["Content-Length"] == str(len(body))
        sock.sendall(request(body_of("r-kept-1")))
        status, headers, _ = answer_on(sock)
        assert (status, headers["Connection"]) == (200, "keep-alive")
        sock.sendall(request(body_of("r-kept-2"), headers=["Connection: close"]))
        status, headers, _ = answer_on(sock)
        assert (status, headers["Connection"]) == (200, "close")
        assert sock.recv(1) == b""
    with connect(gateway) as sock:
        sock.sendall(request(body_of("r-kept-3"), version="HTTP/1.0"))
        status, headers, _ = answer_on(sock)
        assert (status, headers["Connection"]) == (200, "close")
        assert sock.recv(1) == b""
    assert stored_request_ids(gateway, *[f"r-kept-{n}" for n in range(4)]) == [f"r-kept-{n}" for n in range(4)]


def test_a_chunked_body_sent_after_100_continue_is_received_whole(gateway):
    body = body_of("r-chunked")
    with connect(gateway) as sock:
        head = [f"POST {PATH} HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked", "Expect: 100-continue"]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        assert sock.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        for start in range(0, len(body), 100):
            chunk = body[start:start + 100]
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        status, _, answer = answer_on(sock)
    assert (status, json.loads(answer)) == (200, {"message": "stored"})
    assert stored_request_ids(gateway, "r-chunked") == ["r-chunked"]


def test_of_pipelined_callbacks_the_first_is_answered_and_the_rest_sent_again_by_the_client(gateway):
    with connect(gateway) as sock:
        sock.sendall(request(body_of("r-piped-0")) + request(body_of("r-piped-1")))
        status, headers, _ = answer_on(sock)
        assert (status, headers["Connection"]) == (200, "close")
        assert sock.recv(1) == b""  # closed: the second was never acknowledged
    assert stored_request_ids(gateway, "r-piped-0", "r-piped-1") == ["r-piped-0"]


@pytest.mark.parametrize(
    "forwarded_for, status",
    [
        (None, 200),  # from the proxy itself: 127.0.0.1
        ("10.1.2.3", 200),
        ("203.0.113.9, 10.1.2.3", 200),  # the proxy's own peer is the last
        ("10.9.9.9", 403),
    ],
)
def test_a_trusted_proxys_forwarded_address_is_the_one_allowed_sources_judge(gateway, forwarded_for, status):
    request_id = f"r-from-{forwarded_for}"
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    answer = requests.post(gateway.url + PATH, data=body_of(request_id), headers=headers, timeout=10)
    assert answer.status_code == status, answer.text
    assert stored_request_ids(gateway, request_id) == ([request_id] if status == 200 else [])


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        (PATH, body_of("r-401", password="wrong"), 401, "wrong callback credentials"),
        (PATH, b"{not json", 400, "the body is not JSON"),
        (PATH.replace("StateService", "NoSuchService"), body_of("r-404"), 404, None),
        (PATH, body_of("r-413", state_name="x" * (1 << 20)), 413, None),
    ],
)
def test_a_callback_refused_on_the_loop_is_answered_with_its_reason_and_its_id_and_kept_nowhere(
    gateway, path, body, status, message
):
    answer = requests.post(gateway.url + path, data=body, headers={"X-Request-Id": "refused-1"}, timeout=10)
    assert answer.status_code == status
    assert answer.headers["X-Request-Id"] == "refused-1"
    if message:
        assert answer.json() == {"message": message}
    assert stored_request_ids(gateway, "r-401", "r-404", "r-413") == []


# -- a store that hangs ------------------------------------------------------------------------


def postgres_processes(server):
    """The server's processes: the postmaster and its children, the backends of each connection."""
    children = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == server.pid:
            children.append(int(pid))
    return [server.pid, *children]


def test_a_store_that_hangs_gets_each_callback_a_503_within_the_commit_wait_and_heals(tmp_path, simulator, postgres):
    listener = Listener()
    url = postgres.create_database()
    register_listener(PostgresStore(url), listener)
    gateway = bridge(tmp_path, simulator, Gateway, store_url=url).start()
    stopped = []
    try:
        wait_until(lambda: readiness(gateway)[0] == 200, what="readiness")
        assert requests.post(gateway.url + PATH, data=body_of("r-before"), timeout=10).status_code == 200
        stopped = postgres_processes(postgres)
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)  # every connection open, and nothing answers on any
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(
                lambda r: requests.post(gateway.url + PATH, data=body_of(r), timeout=30), ["r-hung-0", "r-hung-1", "r-hung-2", "r-hung-3"]
            ))
        waited_s = time.monotonic() - started
        assert [answer.status_code for answer in answers] == [503] * 4, [answer.text for answer in answers]
        assert {answer.headers["Retry-After"] for answer in answers} == {"5"}
        assert 4.5 < waited_s < 8, waited_s  # the commit wait (5 s), told within the worker's next second
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        stopped = []
        # ThingSpace sends them again; nothing is lost, nothing delivered twice.
        wait_until(
            lambda: requests.post(gateway.url + PATH, data=body_of("r-after"), timeout=10).status_code == 200,
            timeout_s=30,
            what="a callback stored once the store answers again",
        )
        again = [requests.post(gateway.url + PATH, data=body_of(r), timeout=10).status_code for r in ["r-hung-0", "r-hung-1", "r-hung-2", "r-hung-3"]]
        assert again == [200] * 4
        expected = ["r-before", "r-after", "r-hung-0", "r-hung-1", "r-hung-2", "r-hung-3"]
        wait_until(lambda: sorted(set(delivered_request_ids(listener))) == sorted(expected), timeout_s=30, what="deliveries")
        time.sleep(0.5)
        assert sorted(delivered_request_ids(listener)) == sorted(expected)
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        gateway.stop()
        listener.close()
