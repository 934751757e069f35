"""Deliveries over kept-alive connections to a real HTTP/1.1 listener on 127.0.0.1, through the real worker and store."""

import http.server
import threading

import pytest

from gateway.callbacks.delivery import IN_FLIGHT
from gateway.metrics import CALLBACKS_RETRIED
from tests.test_callbacks import ACCOUNT
from tests.test_delivery_faults import SERVICE, add, running_worker, settings, store, store_path, wait_until  # noqa: F401

CALLBACKS = 12


class KeepAliveListener:
    """Acknowledges every POST over HTTP/1.1, keeping the connection open unless ``closes_when_idle``:
    then it closes each one after answering, without saying so, as a listener whose idle timeout passed."""

    def __init__(self, closes_when_idle=False):
        self.ports = []  # the client's port of each POST
        self.closed = 0  # connections the listener closed
        self.closes_when_idle = closes_when_idle
        self._lock = threading.Lock()
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with listener._lock:
                    listener.ports.append(self.client_address[1])
                self.close_connection = closes_when_idle

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def shutdown_request(self, request):
                super().shutdown_request(request)
                with listener._lock:
                    listener.closed += 1

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/listener"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def posts(self):
        with self._lock:
            return len(self.ports)

    def close(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(params=[False, True], ids=["kept open", "closed when idle"])
def keepalive_listener(request):
    listener = KeepAliveListener(closes_when_idle=request.param)
    yield listener
    listener.close()


def test_each_callback_is_posted_once_over_a_kept_alive_connection_or_a_fresh_one_after_an_idle_close(
    store, keepalive_listener
):
    listener = keepalive_listener
    retried_before = CALLBACKS_RETRIED._value.get()
    store.put_registration(ACCOUNT, SERVICE, listener.url, "legacy", "pw")
    worker = running_worker(store, settings())
    try:
        for n in range(CALLBACKS):  # one at a time: the idle listener has closed the last connection first
            add(store, f"r-{n}")
            worker.wake()  # as the receiver does once it stored one
            wait_until(lambda: store.counts()["delivered"] == n + 1, what=f"callback {n} delivered")
            if listener.closes_when_idle:
                wait_until(lambda: listener.closed == n + 1, what=f"connection {n} closed")
    finally:
        worker.stop(timeout=10)
    assert listener.posts() == CALLBACKS
    assert CALLBACKS_RETRIED._value.get() == retried_before, "no attempt failed on a connection the listener closed"
    if listener.closes_when_idle:
        assert len(set(listener.ports)) == CALLBACKS
    else:  # one at a time: one connection, kept alive
        assert len(set(listener.ports)) == 1


def test_deliveries_under_way_together_each_have_a_connection_kept_alive_for_the_next(store):
    listener = KeepAliveListener()
    store.put_registration(ACCOUNT, SERVICE, listener.url, "legacy", "pw")
    count = 4 * IN_FLIGHT
    for n in range(count):
        add(store, f"r-{n}", imei=f"9900008624{n:05d}")
    worker = running_worker(store, settings())
    try:
        wait_until(lambda: store.counts()["delivered"] == count, what="every callback delivered")
    finally:
        worker.stop(timeout=10)
        listener.close()
    assert listener.posts() == count
    assert 1 < len(set(listener.ports)) <= IN_FLIGHT  # concurrent, and each connection used again
