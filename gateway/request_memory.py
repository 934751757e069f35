"""What the gateway remembers of each GoToState it forwarded: for the callbacks' envelopes and for ``trace``.

A request whose callbacks must spell kinds the client's way is remembered,
flushed to disk, before it is answered: its callbacks may come at once.
Most requests have no such spellings and are remembered for ``trace`` alone,
which nobody waits for (the store does not even flush them). Those the
request thread only queues; one supervised thread writes what was queued, a
few hundredths of a second's worth at a time, in one transaction. Written by the
request thread instead, one transaction per request, with the other worker
processes writing the same file, they cost each request about 0.2 ms of CPU
over HTTP (the write lock, five statements and the store's Python around
them), a fifth of all it cost.

A failed write is not retried: each request in it is logged as not
remembered (its callbacks then spell kinds in upper case and ``trace``
shows no forwarding), and the writer backs off under supervision while the
store is down. A writer stuck in a store that hangs rather than fails
holds at most MAX_QUEUED requests in memory; past that, a request is
logged as not remembered at once (rate-limited). What is still queued when the gateway
stops is written then.
"""

import logging
import queue
import threading

from gateway.logs import RateLimited
from gateway.store import ForwardedRequest
from gateway.supervise import supervised_thread

log = logging.getLogger(__name__)
# Past MAX_QUEUED, every request would say so.
_overflowing = RateLimited(log)

# How long the writer lets requests gather once one is queued: under load a
# transaction carries tens of them (measured over HTTP: 25 ms cost the
# requests about 0.03 ms less each than 5 ms); alone, a request is in the
# store that much after its answer.
GATHER_S = 0.025
# Requests queued at most (seconds of them under load): beyond, the writer is stuck.
MAX_QUEUED = 10_000
# How often an idle writer looks whether it should stop.
IDLE_WAKE_S = 1.0
NOT_REMEMBERED = "requestId=%s: not remembered; its callbacks spell kinds in upper case, trace shows no forwarding"


class RequestMemory:
    """``remember`` each forwarded GoToState; ``start`` the writer in the process that serves, ``stop`` it last."""

    def __init__(self, store):
        self._store = store
        self._queued = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread = None

    def start(self):
        self._thread = supervised_thread("request-memory", self._write_gathered, self._stopping)
        return self

    def stop(self, timeout=None):
        """Stop the writer, then write what is still queued."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self._write(self._take_queued())
        except Exception:  # noqa: BLE001 - logged per request by _write; stopping goes on
            pass

    def remember(self, request_id, kind_spellings, now, account, devices):
        """Never raises: ThingSpace has the request, its RequestId must reach the client."""
        request = ForwardedRequest(request_id, now, account, devices, kind_spellings)
        if not kind_spellings:
            if self._queued.qsize() < MAX_QUEUED:
                self._queued.put(request)
            else:
                _overflowing.warning(NOT_REMEMBERED + " (too many waiting for the store)", request_id)
            return
        try:
            self._store.remember_requests([request])
        except Exception:  # noqa: BLE001 - see above
            log.exception(NOT_REMEMBERED, request_id)

    def _write_gathered(self):
        try:
            first = self._queued.get(timeout=IDLE_WAKE_S)
        except queue.Empty:
            return
        self._stopping.wait(GATHER_S)
        self._write([first, *self._take_queued()])

    def _take_queued(self):
        taken = []
        while True:
            try:
                taken.append(self._queued.get_nowait())
            except queue.Empty:
                return taken

    def _write(self, requests):
        if not requests:
            return
        try:
            self._store.remember_requests(requests)
        except Exception:
            for request in requests:
                log.error(NOT_REMEMBERED, request.request_id)
            raise  # the supervisor says why, once per outage, and backs off
