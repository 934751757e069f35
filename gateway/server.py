"""``m2m-gateway serve``: the gateway under gunicorn.

Each gunicorn worker process builds its own :class:`gateway.app.Gateway`
(so its own delivery worker and store connections: nothing is shared across
a fork) and closes it when it exits. The workers share the store, SQLite or
PostgreSQL, which is built for exactly that. The ``gthread`` worker keeps
slow upstream calls from holding a whole process: each worker serves
``threads`` requests at once.
"""

import gc
import logging
import os
import shutil
import sys
import tempfile

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from gateway import logs


# Connections each worker holds at once; one more is answered 503 and closed.
MAX_CONNECTIONS = 500


class GunicornLogger(glogging.Logger):
    """gunicorn's records through the gateway's own handler (text or JSON, one
    line each) instead of handlers of its own; its access log stays off, the
    gateway writes its own."""

    def setup(self, cfg):
        self.error_log.setLevel(self.LOG_LEVELS.get(cfg.loglevel.lower(), logging.INFO))
        self.error_log.propagate = True

    def access(self, resp, req, environ, request_time):
        """Off, as set up: not even the five settings that would turn it on are read, each request."""


class GatewayServer(BaseApplication):
    def __init__(self, settings):
        self.settings = settings
        super().__init__()

    def load_config(self):
        server = self.settings.server
        host = f"[{server.host}]" if ":" in server.host else server.host
        options = {
            "bind": f"{host}:{server.port}",
            "workers": server.workers,
            "threads": server.threads,
            # gthread, with each request read whole before a thread takes it:
            # slow clients cannot hold the threads (gateway/whole_requests.py).
            "worker_class": "gateway.whole_requests.WholeRequestWorker",
            # Per worker: each may be receiving a request (bounded by
            # [server] read_timeout_s) or kept alive between two.
            "worker_connections": MAX_CONNECTIONS,
            # A worker may wait this long on ThingSpace before gunicorn kills it.
            "timeout": int(self.settings.upstream.timeout_s * 2 + 30),
            "graceful_timeout": int(self.settings.callbacks.timeout_s + 10),
            "accesslog": None,
            "logger_class": GunicornLogger,
            "worker_exit": _close_gateway,
            "proc_name": "m2m-gateway",
            # Answers are written with sendall, which holds their head until the
            # body's first write (gateway/whole_requests.py); the gateway serves no
            # files, so gunicorn's sendfile would only bypass it.
            "sendfile": False,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        from gateway.app import Gateway

        logs.configure(self.settings.logging.format, self.settings.logging.level)
        gateway = Gateway(self.settings)
        # What the worker has built to serve (modules, Spyne's models and
        # interfaces: some 60,000 objects) lives as long as it does. Frozen,
        # a full collection walks the requests' objects only: during a
        # 10,000-device request, which triggers one, 10 ms instead of 100+.
        gc.collect()
        gc.freeze()
        return gateway


def _close_gateway(server, worker):
    if getattr(worker, "wsgi", None) is not None:  # none when loading the app failed
        # Lets the delivery worker finish the callback it is sending.
        worker.wsgi.close(timeout=server.cfg.graceful_timeout)


def run(settings):
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the server set up its multiprocess directory")
    logs.configure(settings.logging.format, settings.logging.level)
    # prometheus_client's variable (see gateway.metrics), set before any worker
    # imports it: each worker keeps its counters in this directory, and a
    # scrape of any of them sums all.
    metrics_dir = tempfile.mkdtemp(prefix="m2m-gateway-metrics-")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
    master = os.getpid()
    try:
        _check_store(settings)
        GatewayServer(settings).run()
    finally:
        # A worker is a fork of this very call and leaves by unwinding it:
        # only the master may remove what the other workers still use.
        if os.getpid() == master:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _check_store(settings):
    """Open (and migrate) the store once before any worker starts.

    A store that cannot be reached at start stops the server with one line
    (StoreUnavailable, naming the setting, never a password) rather than
    with a traceback from each worker gunicorn boots and buries.
    """
    from gateway.store import open_store

    open_store(settings.store).close()
