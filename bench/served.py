"""Any WSGI application under ``serve``'s own gunicorn line: how the benchmarks run the floor.

``python -m bench.served MODULE:NAME`` runs gateway/server.py's GatewayServer
(the worker class that reads requests whole, workers, threads,
worker_connections, timeouts: all as ``m2m-gateway serve`` sets them from
the same configuration) with that application in place of the gateway's.
So the floor and the gateway differ in the application only.
"""

import importlib
import sys

from gateway import config
from gateway.server import GatewayServer


class ServedApplication(GatewayServer):
    def __init__(self, settings, app_path):
        self.app_path = app_path
        super().__init__(settings)

    def load_config(self):
        super().load_config()
        self.cfg.set("worker_exit", _nothing_to_close)

    def load(self):
        module, _, name = self.app_path.partition(":")
        return getattr(importlib.import_module(module), name)


def _nothing_to_close(server, worker):
    pass


if __name__ == "__main__":
    ServedApplication(config.load(), sys.argv[1]).run()
