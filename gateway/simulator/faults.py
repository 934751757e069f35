"""Injected faults: the next requests to a path fail the way ThingSpace can fail.

``POST /_simulator/faults`` queues a fault for one exact API path; the next
requests to that path (any method) take the queued faults in the order they
were registered, one per request. Each kind is a row of ``KINDS``: whether the
endpoint still does its work, and how the request is answered. ``delay_s``
holds back any answer (the hang-up included); only ``timeout`` waits by default.
"""

import logging
import math
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from werkzeug.wrappers import Response

from gateway.simulator.errors import (
    ACCESS_TOKEN_EXPIRED,
    ACCESS_TOKEN_INVALID,
    RATE_LIMIT_EXCEEDED,
    SESSION_EXPIRED,
    SESSION_INVALID,
    UNEXPECTED_ERROR,
    error_response,
    invalid_request,
)

log = logging.getLogger("gateway.simulator")

# Faults reach the ThingSpace API only: never the control API that manages them.
FAULTABLE_PREFIX = "/api/"
TIMEOUT_DELAY_S = 5.0
_FIELDS = ("path", "fault", "times", "delay_s")


def _answered_late(request, performed):
    """The endpoint's own answer; the delay makes it late."""
    return performed


def _hang_up(request, performed):
    """A WSGI application that closes the connection instead of answering."""

    def hang_up(environ, start_response):
        connection = environ.get("werkzeug.socket")
        if connection is None:
            log.warning("fault drop: the server gives no socket to close")
        else:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:  # the client left first
                pass
            connection.close()
        # werkzeug's server takes this for a client gone away: it writes
        # nothing, where any other exception would make it answer a 500.
        raise ConnectionAbortedError("fault drop: connection closed without an answer")

    return hang_up


def _error_document(status, code, message, headers=None):
    def answer(request, performed):
        response = error_response(status, code, message)
        response.headers.update(headers or {})
        return response

    return answer


def _body(status, text, mimetype):
    def answer(request, performed):
        return Response(text, status=status, mimetype=mimetype)

    return answer


@dataclass(frozen=True)
class Kind:
    performs: bool  # whether the endpoint does its work (a goToState is accepted)
    answer: Callable  # (request, the endpoint's response or None) -> a WSGI application
    default_delay_s: float = 0.0


KINDS = {
    "timeout": Kind(True, _answered_late, TIMEOUT_DELAY_S),
    "drop": Kind(False, _hang_up),
    "status-429": Kind(
        False, _error_document(429, RATE_LIMIT_EXCEEDED, "Too many requests", {"Retry-After": "1"})
    ),
    "status-500": Kind(False, _error_document(500, UNEXPECTED_ERROR, "Unexpected error")),
    "status-502-html": Kind(False, _body(502, "<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")),
    "non-json": Kind(False, _body(200, "OK", "text/plain")),
    # The four 401s: the bearer or the session, expired or not known.
    "expired-bearer": Kind(False, _error_document(401, ACCESS_TOKEN_EXPIRED, "Access token expired or invalid")),
    "invalid-bearer": Kind(False, _error_document(401, ACCESS_TOKEN_INVALID, "Access token invalid")),
    "expired-session": Kind(False, _error_document(401, SESSION_EXPIRED, "SessionToken Expired")),
    "invalid-session": Kind(False, _error_document(401, SESSION_INVALID, "SessionToken Invalid")),
    # A 401 without ThingSpace's error document, as an OAuth layer may answer.
    "status-401-text": Kind(False, _body(401, "Unauthorized", "text/plain")),
}


@dataclass(frozen=True)
class Fault:
    kind: str
    delay_s: float

    @property
    def performs(self):
        """Whether the endpoint still does its work; callbacks are never sent for a faulted request."""
        return KINDS[self.kind].performs

    def answer(self, request, performed):
        """The WSGI application answering ``request``; ``performed`` is the endpoint's response, or None."""
        return KINDS[self.kind].answer(request, performed)

    def wait(self):
        time.sleep(self.delay_s)

    def document(self):
        return {"fault": self.kind, "delay_s": self.delay_s}


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fault_order(body):
    """``(path, Fault, times)`` from a control request's body, or the 400 naming the bad field."""
    unknown = sorted(body.keys() - set(_FIELDS))
    if unknown:
        raise invalid_request(unknown[0], "is not a known field")
    path = body.get("path")
    if not isinstance(path, str) or not path.startswith(FAULTABLE_PREFIX) or "?" in path:
        raise invalid_request("path", f"must be an API path under {FAULTABLE_PREFIX}, without a query")
    kind = body.get("fault")
    if kind not in KINDS:
        raise invalid_request("fault", f"must be one of {', '.join(KINDS)}")
    times = body.get("times", 1)
    if not isinstance(times, int) or isinstance(times, bool) or times < 1:
        raise invalid_request("times", "must be a whole number, 1 or more")
    delay_s = body.get("delay_s", KINDS[kind].default_delay_s)
    if not _number(delay_s) or not math.isfinite(delay_s) or delay_s < 0:
        raise invalid_request("delay_s", "must be a number of seconds, 0 or more")
    return path, Fault(kind, float(delay_s)), times


class FaultQueue:
    """The faults waiting for each path, first registered first taken; thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending = {}  # path -> deque of [Fault, requests left]

    def add(self, path, fault, times):
        with self._lock:
            self._pending.setdefault(path, deque()).append([fault, times])

    def take(self, path):
        """The fault the next request to ``path`` suffers, or None."""
        with self._lock:
            queue = self._pending.get(path)
            if not queue:
                return None
            waiting = queue[0]
            waiting[1] -= 1
            if waiting[1] == 0:
                queue.popleft()
                if not queue:
                    del self._pending[path]
            return waiting[0]

    def clear(self):
        """Forget every pending fault; how many requests would have suffered one."""
        with self._lock:
            cleared = sum(times for queue in self._pending.values() for _, times in queue)
            self._pending.clear()
        return cleared
