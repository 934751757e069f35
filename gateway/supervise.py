"""Background threads that no exception ends.

A background loop of the gateway (delivery, claim renewal) runs one step at a
time under supervision: a step that raises is counted, logged once for the
whole outage rather than once per try, and tried again after a back-off that
doubles up to a ceiling; the first step that succeeds afterwards says the
outage is over. So a store that is down for a minute costs two log lines and
heals by itself, with no restart.
"""

import logging
import threading
import time

from gateway.exceptions import GatewayError
from gateway.metrics import WORKER_RESTARTS

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0


def supervised_thread(name, step, stopping):
    """A started daemon thread calling ``step()`` until ``stopping`` (an Event) is set."""
    thread = threading.Thread(target=_supervise, args=(name, step, stopping), name=name, daemon=True)
    thread.start()
    return thread


def _supervise(name, step, stopping):
    kind = name.rstrip("-0123456789")  # the metric label: one per loop, not per thread
    failures, failing_since, backoff = 0, None, FIRST_BACKOFF_S
    while not stopping.is_set():
        try:
            step()
        except Exception as error:  # noqa: BLE001 - the point of supervision
            WORKER_RESTARTS.labels(kind).inc()
            if failures == 0:
                failing_since = time.monotonic()
                if isinstance(error, GatewayError):  # expected outages say what they are; no traceback
                    log.error("%s failed: %s; retrying with back-off until it recovers", name, error)
                else:
                    log.exception("%s failed unexpectedly; retrying with back-off until it recovers", name)
            failures += 1
            stopping.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            continue
        if failures:
            log.warning("%s recovered after %d failed tries in %.1f s", name, failures, time.monotonic() - failing_since)
            failures, backoff = 0, FIRST_BACKOFF_S
