"""What the tests run on 127.0.0.1: the simulator and the gateway, in a thread of this process
or as processes started as a user would; the one test listener; waiting on the store."""

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from gateway import processes
from tests.conftest_postgres import postgres_server, postgres_url  # noqa: F401  (fixtures)

ROOT = processes.ROOT
free_port = processes.free_port
# How often a server thread of this process looks whether it is to stop: a
# test's teardown waits up to this for each one it closes.
SHUTDOWN_POLL_S = 0.01


class Process:
    """A ``python -m gateway`` child process listening on a port of 127.0.0.1."""

    def __init__(self, args, port, env=None, log_path=None):
        self.args, self.port = args, port
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"
        self.popen = None

    def start(self):
        self.popen = processes.start(self.args, self.env, self.log_path)
        processes.wait_for_port(self.port, [self.popen])
        return self

    def stop(self, sig=signal.SIGTERM):
        """SIGTERM: a graceful stop. SIGKILL: a crash of the whole process group we started."""
        if self.popen:
            processes.stop(self.popen, sig=sig)

    def pids(self):
        """The process and its children (gunicorn's workers)."""
        children = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children").read_text().split()
        return [self.popen.pid, *map(int, children)]

    def log(self):
        return Path(self.log_path).read_text(errors="replace") if self.log_path else ""


class SimulatorControl:
    """What a test asks the simulator at ``url``: its recorded requests, a reset, a failing device."""

    url = None

    def requests(self, path=None):
        records = requests.get(self.url + "/_simulator/requests", timeout=5).json()
        return [r for r in records if path is None or r["path"] == path]

    def reset(self):
        requests.post(self.url + "/_simulator/reset", timeout=5).raise_for_status()

    def fail_device(self, device_id, code, description):
        answer = requests.post(
            self.url + "/_simulator/failing-devices",
            json={"id": device_id, "reasonCode": code, "reasonDesc": description},
            timeout=5,
        )
        answer.raise_for_status()


class Simulator(Process, SimulatorControl):
    """``m2m-gateway simulator`` as a process of its own (for a test that stops it under a gateway)."""

    def __init__(self, tmp_path, *extra, port=None):
        port = port or free_port()
        args = ["simulator", "--port", str(port), "--callback-retry-s", "0.2", *extra]
        super().__init__(args, port, log_path=tmp_path / "simulator.log")


class ServedInThread:
    """A WSGI application (``app``) on werkzeug's threaded server, in a thread of this process, on ``port``."""

    port = app = _server = None
    listening_fd = None  # a socket listening on port already, to serve instead of binding one

    def _serve(self, app):
        from gateway.access import quiet_server

        self.app = app
        self._server = quiet_server("127.0.0.1", self.port, app, fd=self.listening_fd)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S}, daemon=True).start()
        return self

    def _stop_serving(self):
        """Stop taking requests; False if not serving."""
        if self._server is None:
            return False
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        return True


class InProcessSimulator(ServedInThread, SimulatorControl):
    """The simulator's WSGI application on werkzeug's threaded server in a thread of this process."""

    def __init__(self, port=None, listening=None, **settings):
        """``settings``: SimulatorSettings' fields, over quick retries. ``listening``: a socket
        bound and listening on ``port``, to serve on (it stays open after ``stop``)."""
        from gateway.simulator import SimulatorSettings

        self.listening_fd = listening.fileno() if listening else None
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._settings = SimulatorSettings(**{"port": self.port, "callback_retry_s": 0.2, **settings})

    def start(self):
        from gateway.simulator import Simulator as SimulatorApp

        return self._serve(SimulatorApp(self._settings))

    def stop(self):
        if self._stop_serving():
            self.app.close()


def gateway_settings(tmp_path, upstream_url, port, settings):
    """The ``M2MGW_`` variables of a test gateway: its port, upstream and store file, and ``settings``."""
    return {
        "M2MGW_SERVER_PORT": str(port),
        "M2MGW_UPSTREAM_BASE_URL": upstream_url,
        "M2MGW_STORE_PATH": str(tmp_path / "gateway.sqlite3"),
        # One worker keeps the many short-lived test gateways quick to
        # start; tests of several workers ask for them.
        "M2MGW_SERVER_WORKERS": "1",
        **{f"M2MGW_{key.upper()}": str(value) for key, value in settings.items()},
    }


class Gateway(Process):
    """``m2m-gateway serve``: gunicorn, its worker, signals, the log file."""

    def __init__(self, tmp_path, upstream_url, **settings):
        port = free_port()
        env = gateway_settings(tmp_path, upstream_url, port, settings)
        super().__init__(["serve"], port, env=env, log_path=tmp_path / "gateway.log")

    def stop(self, sig=signal.SIGINT):
        """SIGINT by default: gunicorn's quick shutdown (its workers still close the gateway,
        letting a delivery under way finish). A SIGTERM'd worker first sleeps out its
        1 s poll, and no test's point is that wait."""
        super().stop(sig)

    def service_url(self, service):
        return f"{self.url}/api/v2/{service}.svc"


class InProcessGateway(ServedInThread):
    """The gateway's WSGI application (gateway.app.Gateway, delivery worker and all) on
    werkzeug's threaded server in a thread of this process.

    For what the application does over real HTTP where gunicorn, signals and a
    process of its own are not the point: it starts in a fraction of the time.
    ``env`` is the environment a ``python -m gateway`` command needs to reach
    its store. Its log lines go to this process's logging (caplog).
    """

    def __init__(self, tmp_path, upstream_url, **settings):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._settings = gateway_settings(tmp_path, upstream_url, self.port, settings)
        self.env = {**os.environ, **self._settings}

    def start(self):
        from gateway import config
        from gateway.app import Gateway as GatewayApp

        return self._serve(GatewayApp(config.load(environ=self._settings)))

    def stop(self):
        """As the server's graceful stop: no new requests, then the delivery worker finishes what it sends."""
        if self._stop_serving():
            self.app.close(timeout=10)

    service_url = Gateway.service_url


def outbox_counts(gateway):
    """How many of the gateway's callbacks are in each state, read from its store (file or database)."""
    from gateway import config
    from gateway.store import open_store

    settings = config.load(environ={name: value for name, value in gateway.env.items() if name.startswith("M2MGW_")})
    store = open_store(settings.store)
    try:
        return store.counts()
    finally:
        store.close()


def wait_until_settled(gateway, delivered, timeout_s=30):
    """Wait until ``delivered`` callbacks are marked delivered and none is pending or claimed.

    The gateway marks one delivered after its listener answered, and never
    sends a delivered one again: from then on nothing more can arrive, and a
    test asserting "no duplicate" needs no "would show up here" sleep.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        counts = outbox_counts(gateway)
        if counts["delivered"] >= delivered and counts["pending"] == counts["claimed"] == 0:
            return counts
        assert time.monotonic() < deadline, f"not settled after {timeout_s} s: {counts}"
        time.sleep(0.05)


# A test using one of these needs a server process (pytest.mark.process): the
# session's gunicorn gateway, the session's PostgreSQL cluster.
PROCESS_FIXTURES = {"gateway", "postgres_server", "postgres_url"}


def pytest_collection_modifyitems(items):
    for item in items:
        if PROCESS_FIXTURES.intersection(item.fixturenames):
            item.add_marker(pytest.mark.process)


@pytest.fixture(autouse=True)
def root_logging_restored():
    """The root logger's handlers and levels as before the test.

    A test that configures logging (logs.configure, cli.main) would leave the
    root logger writing to its captured standard error, closed once the test
    ends: a thread still running then (an in-process simulator's callback
    sender) would print "Logging error ... I/O operation on closed file".
    """
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_spyne = {name: logging.getLogger(name).level for name in ("spyne", "spyne.application")}
    yield
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    for name, level in saved_spyne.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="session")
def simulator():
    """ThingSpace, simulated in this process; the gateways reach it over HTTP."""
    server = InProcessSimulator().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory, simulator):
    process = Gateway(tmp_path_factory.mktemp("gateway"), simulator.url).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def served_gateway(tmp_path_factory, simulator):
    """The gateway in this process over real HTTP, before the shared simulator: for the
    SOAP toolkits (zeep, suds) and the request corpus, which need no gunicorn."""
    server = InProcessGateway(tmp_path_factory.mktemp("served-gateway"), simulator.url).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway_app(tmp_path_factory, simulator):
    """The gateway's WSGI application in this process, before the shared simulator,
    for werkzeug's test client: the edge tests need no server of their own."""
    from gateway import config
    from gateway.app import Gateway as GatewayApp

    settings = config.load(environ={
        "M2MGW_UPSTREAM_BASE_URL": simulator.url,
        "M2MGW_STORE_PATH": str(tmp_path_factory.mktemp("gateway-app") / "gateway.sqlite3"),
    })
    app = GatewayApp(settings)
    yield app
    app.close(timeout=10)


@pytest.fixture
def new_gateway_app(tmp_path):
    """Makes gateway WSGI applications of their own (``(upstream_url, **settings)``), closed after the test."""
    from gateway import config
    from gateway.app import Gateway as GatewayApp

    apps = []

    def new(upstream_url, **settings):
        apps.append(GatewayApp(config.load(environ=gateway_settings(tmp_path, upstream_url, free_port(), settings))))
        return apps[-1]

    yield new
    for app in apps:
        app.close(timeout=10)


@pytest.fixture
def upstream(simulator):
    """The shared simulator, with nothing recorded yet."""
    simulator.reset()
    return simulator


class Listener:
    """A callback listener on 127.0.0.1 (the gateway's legacy one, or the simulator's REST one):
    records every POST, answers what it is told. ``tls``: a server-side SSLContext, for https://."""

    def __init__(self, statuses=(), tls=None):
        import http.server

        self.received = []  # (path, headers, body, status, when answered)
        self.status = 200
        self.next_statuses = list(statuses)  # answered, in order, to the next POSTs before `status` again
        self.delay_s = 0.0  # how long it takes to answer: past the gateway's timeout, a failure
        self._lock = threading.Lock()
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with listener._lock:
                    status = listener.next_statuses.pop(0) if listener.next_statuses else listener.status
                delay_s = listener.delay_s
                time.sleep(delay_s)
                with listener._lock:
                    listener.received.append((self.path, dict(self.headers), body, status, time.time()))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_port}/listener"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S}, daemon=True)
        self._thread.start()

    def acknowledged(self):
        """Bodies the listener answered 2xx, in arrival order."""
        return [body for _, body in self.acknowledged_at()]

    def acknowledged_at(self):
        """(when answered, body) of each POST answered 2xx."""
        with self._lock:
            return [(when, body) for _, _, body, status, when in self.received if 200 <= status < 300]

    def all(self):
        """(path, headers, body, status) of every POST."""
        with self._lock:
            return [record[:4] for record in self.received]

    def posted_json(self):
        """The JSON document of every POST, whatever it was answered, in arrival order."""
        return [json.loads(body) for _, _, body, _ in self.all()]

    def wait_for(self, count, timeout_s=30):
        """The bodies acknowledged, once there are ``count``."""
        self._wait(lambda: len(self.acknowledged()) >= count, f"{count} callbacks acknowledged", timeout_s)
        return self.acknowledged()

    def wait_for_posts(self, count, timeout_s=30):
        """``posted_json()`` once ``count`` POSTs arrived, acknowledged or not."""
        self._wait(lambda: len(self.all()) >= count, f"{count} POSTs", timeout_s)
        return self.posted_json()

    def _wait(self, condition, what, timeout_s):
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"not {what} after {timeout_s} s: {len(self.all())} POSTs"
            time.sleep(0.02)

    def close(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()
