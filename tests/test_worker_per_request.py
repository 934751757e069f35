"""What `serve`'s worker does once a request for each request, made cheaper, answers as before
(gateway/whole_requests.py): the answer's head and body in one TCP segment, gunicorn's settings
read once, the heartbeat once a second, the requests under way at a graceful stop still answered."""

import email.utils
import signal
import socket
import struct
import threading
import time
import tracemalloc

from gunicorn.config import Config
from gunicorn.workers.workertmp import WorkerTmp

from gateway.whole_requests import HEARTBEAT_S, JOINED_BODY_BYTES, ReplayedSocket, WholeRequestWorker, settings_read_once
from tests.conftest import Gateway
from tests.test_slow_clients import _go_to_state, _log_in
from tests.test_upstream_failures import inject

GO_TO_STATE = "/api/m2m/v1/devices/actions/goToState"
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
# struct tcp_info (linux/tcp.h): tcpi_data_segs_in, the segments with data this end received.
TCP_INFO_BYTES = 160
DATA_SEGS_IN_OFFSET = 152
# gunicorn's keepalive setting, its default: seconds a connection is kept idle between two requests.
KEEPALIVE_S = 2


def data_segments_received(sock):
    return struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES), DATA_SEGS_IN_OFFSET)[0]


def read_answer(sock):
    """One answer with a Content-Length, whole: its head (as text) and its body."""
    received = b""
    while b"\r\n\r\n" not in received:
        data = sock.recv(65536)
        assert data, "the gateway closed the connection"
        received += data
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        data = sock.recv(65536)
        assert data, "the gateway closed the connection"
        body += data
    return head.decode("latin-1"), body


def test_an_answer_reaches_the_client_in_one_segment_head_and_body(gateway):
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        for _ in range(3):  # the first on a new connection, and kept-alive ones
            before = data_segments_received(sock)
            sock.sendall(HEALTH)
            head, body = read_answer(sock)
            assert head.startswith("HTTP/1.1 200 ") and body
            assert data_segments_received(sock) - before == 1


def test_a_large_answer_body_is_sent_as_it_is_not_copied_to_go_with_its_head():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (8 * JOINED_BODY_BYTES)
    body = b"x" * (8 * JOINED_BODY_BYTES)
    received = bytearray(len(head) + len(body))  # before tracing: the reader allocates nothing
    server, client = socket.socketpair()

    def read_all():
        view, at = memoryview(received), 0
        while at < len(received):
            at += client.recv_into(view[at:])

    reader = threading.Thread(target=read_all)
    with server, client:
        reader.start()
        sock = ReplayedSocket(server)
        sock.hold_head()
        sock.sendall(head)
        tracemalloc.start()
        try:
            sock.sendall(body)
            sock.send_held()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        reader.join(10)
    assert received == head + body
    assert peak < len(body) / 4


def test_the_answer_head_is_gunicorns_in_its_order_with_the_current_date(gateway):
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(HEALTH)
        before = time.time()
        head, _ = read_answer(sock)
    lines = head.split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert [line.split(":", 1)[0] for line in lines[1:4]] == ["Server", "Date", "Connection"]
    assert lines[3] == "Connection: keep-alive"
    date = email.utils.parsedate_to_datetime(lines[2].split(": ", 1)[1]).timestamp()
    assert int(before) - 1 <= date <= time.time()


def test_a_kept_alive_connection_serves_again_then_is_closed_once_idle_past_keepalive(gateway):
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=KEEPALIVE_S * 5) as sock:
        for _ in range(2):
            sock.sendall(HEALTH)
            head, _ = read_answer(sock)
            assert head.startswith("HTTP/1.1 200 ") and "Connection: keep-alive" in head
        idle_from = time.monotonic()
        assert sock.recv(1) == b""  # closed by the gateway, before the socket's timeout
        assert time.monotonic() - idle_from >= KEEPALIVE_S - 0.1


def test_settings_read_once_are_gunicorns_values_as_plain_attributes():
    cfg = Config()
    cfg.set("keepalive", 7)
    cfg.set("threads", 3)
    read_once = settings_read_once(cfg)
    for name in cfg.settings:
        assert getattr(read_once, name) == getattr(cfg, name), name
    assert vars(read_once)["keepalive"] == 7 and vars(read_once)["threads"] == 3
    assert read_once.is_ssl == cfg.is_ssl and read_once.worker_class is cfg.worker_class  # Config's properties


def test_a_request_under_way_at_a_graceful_stop_is_answered(tmp_path, upstream):
    gateway = Gateway(tmp_path, upstream.url).start()
    try:
        token = _log_in(gateway.service_url)
        inject(upstream, GO_TO_STATE, "timeout", delay_s=2)  # answered, 2 s late
        answers = []
        going = threading.Thread(target=lambda: answers.append(_go_to_state(gateway.service_url, token)))
        going.start()
        for _ in range(200):  # until the gateway's thread is waiting for ThingSpace
            if upstream.requests(GO_TO_STATE):
                break
            time.sleep(0.05)
        gateway.stop(signal.SIGTERM)
        going.join(30)
    finally:
        gateway.stop()
    assert answers and answers[0].status_code == 200 and "RequestId" in answers[0].text, answers


def test_the_worker_tells_the_arbiter_it_is_alive_once_a_second_not_after_every_request():
    worker = object.__new__(WholeRequestWorker)  # only its heartbeat: the file gunicorn's arbiter watches
    worker.tmp = WorkerTmp(Config())
    try:
        worker.notify()
        first = worker.tmp.last_update()
        for _ in range(100):  # a turn of the loop for each of 100 requests
            worker.notify()
        assert worker.tmp.last_update() == first
        time.sleep(HEARTBEAT_S + 0.1)
        worker.notify()
        assert worker.tmp.last_update() > first
    finally:
        worker.tmp.close()
