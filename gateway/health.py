"""``/healthz`` (the process answers) and ``/readyz`` (it can do its work)."""

import json
import logging

from werkzeug.wrappers import Response

from gateway.exceptions import GatewayError

log = logging.getLogger(__name__)


def healthz(environ, start_response):
    return Response("ok\n", mimetype="text/plain")(environ, start_response)


class Readiness:
    """Ready when the store answers, delivery is not stalled and a ThingSpace bearer token is at hand.

    A load balancer takes an instance that is not ready out of rotation; the
    reasons are in the answer and, with details, in the log. The probe writes
    nothing: it reads the store, and the delivery worker's own record of
    when its last pass completed.
    """

    def __init__(self, store, thingspace, worker):
        self._checks = {"store": store.health, "delivery": worker.check_progress, "upstream": thingspace.bearer}

    def __call__(self, environ, start_response):
        results = {name: self._check(name, check) for name, check in self._checks.items()}
        ready = all(result == "ok" for result in results.values())
        body = json.dumps({"ready": ready, **results})
        return Response(body, status=200 if ready else 503, mimetype="application/json")(environ, start_response)

    @staticmethod
    def _check(name, check):
        try:
            check()
        except GatewayError as error:
            return str(error)
        except Exception:
            log.exception("readiness check %s failed", name)
            return "unavailable (see the gateway's log)"
        return "ok"

