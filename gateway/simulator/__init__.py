"""The embedded ThingSpace simulator: the gateway's default upstream for demos and tests."""

import logging

from werkzeug.serving import WSGIRequestHandler, run_simple

from gateway.simulator.app import Simulator, SimulatorSettings

__all__ = ["Simulator", "SimulatorSettings", "serve"]

log = logging.getLogger("gateway.simulator")


class _QuietRequestHandler(WSGIRequestHandler):
    # The simulator logs what it does with each request; werkzeug's access
    # line per request would only repeat it.
    def log_request(self, code="-", size="-"):
        pass


def serve(settings):
    """Run the simulator until interrupted."""
    simulator = Simulator(settings)
    log.info("simulator listening on http://%s:%d", settings.host, settings.port)
    try:
        run_simple(settings.host, settings.port, simulator, threaded=True, request_handler=_QuietRequestHandler)
    finally:
        simulator.close()
