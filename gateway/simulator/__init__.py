"""The embedded ThingSpace simulator: the gateway's default upstream for demos and tests."""

import logging

from werkzeug.serving import run_simple

from gateway.access import QuietRequestHandler
from gateway.simulator.app import Simulator, SimulatorSettings

__all__ = ["Simulator", "SimulatorSettings", "serve"]

log = logging.getLogger("gateway.simulator")


def serve(settings):
    """Run the simulator until interrupted."""
    simulator = Simulator(settings)
    log.info("simulator listening on http://%s:%d", settings.host, settings.port)
    try:
        run_simple(settings.host, settings.port, simulator, threaded=True, request_handler=QuietRequestHandler)
    finally:
        simulator.close()
