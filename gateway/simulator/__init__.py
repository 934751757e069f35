"""The embedded ThingSpace simulator: the gateway's default upstream for demos and tests."""

import logging

from gateway.access import serve_quietly
from gateway.simulator.app import Simulator, SimulatorSettings

__all__ = ["Simulator", "SimulatorSettings", "serve"]

log = logging.getLogger("gateway.simulator")


def serve(settings):
    """Run the simulator until interrupted."""
    simulator = Simulator(settings)
    log.info("simulator listening on http://%s:%d", settings.host, settings.port)
    try:
        serve_quietly(settings.host, settings.port, simulator)
    finally:
        simulator.close()
