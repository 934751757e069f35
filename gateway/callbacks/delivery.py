"""The delivery worker: stored callbacks to legacy listeners, as SOAP, until acknowledged.

Each gateway process runs one, with a few sending threads. The workers of
several processes share the store: an entry is claimed (with a lease) before
it is sent, so one worker sends it at a time, and a claim left by a worker
that died lapses and is taken again.
A listener acknowledges with 2xx; anything else is retried with exponential
back-off until ``max_attempts``, then the entry is dead (``m2m-gateway
callbacks dead`` lists them, ``retry`` re-drives them).

Delivery is at least once: a process killed after the listener answered 2xx
but before that was recorded sends the callback again after restart.
"""

import json
import logging
import os
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

import requests

from gateway import outbound
from gateway.metrics import CALLBACKS_DEAD, CALLBACKS_DELIVERED, CALLBACKS_RETRIED
from gateway.translate import callback

log = logging.getLogger(__name__)

BATCH = 10
# Threads sending at once in each process: a slow listener holds one, not all.
SENDERS = 4
# How often a process expires and purges old entries: each is a write
# transaction, too dear for every pass of the delivery loop.
HOUSEKEEPING_S = 60.0
# How often an idle worker looks for work other processes stored.
IDLE_POLL_S = 1.0


class DeliveryWorker:
    def __init__(self, store, settings, retain_s):
        self._store = store
        self._settings = settings
        self._retain_s = retain_s
        self._housekeeping_lock = threading.Lock()
        self._next_housekeeping = 0.0
        # Long enough to send a whole batch to listeners that all time out.
        self._lease_s = settings.timeout_s * (BATCH + 1)
        self._id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"callback-delivery-{n}", daemon=True) for n in range(SENDERS)
        ]

    def start(self):
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout=None):
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)

    def wake(self):
        """A callback was stored: look now rather than at the next poll."""
        self._wake.set()

    def _run(self):
        http = outbound.session()  # one per thread: requests' sessions are not thread-safe
        while not self._stopping.is_set():
            try:
                busy = self._deliver_due(http)
            except Exception:  # the worker must outlive any one failure, e.g. a locked store
                log.exception("callback delivery failed; trying again shortly")
                busy = False
            if not busy:
                self._wake.wait(self._idle_wait())
                self._wake.clear()

    def _deliver_due(self, http):
        now = time.time()
        self._housekeeping(now)
        deliveries = self._store.claim_due(self._id, now, self._lease_s, BATCH)
        lease_ends = now + self._lease_s
        for delivery in deliveries:
            # Past our lease another worker may own the entry: never send it then.
            if self._stopping.is_set() or time.time() + self._settings.timeout_s > lease_ends:
                break  # the remaining claims lapse and are taken again
            self._deliver(http, delivery)
        return bool(deliveries)

    def _housekeeping(self, now):
        """Dead-letter what waited too long for a listener; forget what is older than the retention."""
        if now < self._next_housekeeping or not self._housekeeping_lock.acquire(blocking=False):
            return
        try:
            self._next_housekeeping = now + HOUSEKEEPING_S
            expired = self._store.expire_waiting(now, self._settings.expire_after_s)
            purged = self._store.purge_delivered_before(now - self._retain_s)
            self._store.forget_requests_before(now - self._retain_s)
            if expired or purged:
                log.info("housekeeping: %d callbacks expired waiting for a listener, %d delivered ones purged", expired, purged)
        finally:
            self._housekeeping_lock.release()

    def _idle_wait(self):
        next_due = self._store.next_due_at()
        if next_due is None:
            return IDLE_POLL_S
        return min(IDLE_POLL_S, max(0.0, next_due - time.time()))

    def _deliver(self, http, delivery):
        attempt = delivery.attempts + 1
        envelope = callback.to_envelope(
            json.loads(delivery.body),
            username=delivery.username,
            password=delivery.password,
            callback_count=attempt,
            max_callback_threshold=self._settings.max_attempts,
            kind_spellings=self._store.kind_spellings(delivery.request_id),
        )
        started = time.monotonic()
        problem = self._post(http, delivery.url, envelope)
        now = time.time()
        history = {"url": delivery.url, "duration_s": time.monotonic() - started}  # for the entry's attempts
        if problem is None:
            self._store.mark_delivered(delivery.id, self._id, now, **history)
            CALLBACKS_DELIVERED.inc()
            log.info("callback %d requestId=%s delivered (attempt %d)", delivery.id, delivery.request_id, attempt)
            return
        retry_at = None
        if attempt < self._settings.max_attempts:
            retry_at = now + self._settings.backoff_s * 2 ** (attempt - 1)
        self._store.mark_failed(delivery.id, self._id, now, problem, retry_at, **history)
        (CALLBACKS_RETRIED if retry_at else CALLBACKS_DEAD).inc()
        log.warning(
            "callback %d requestId=%s attempt %d/%d failed: %s%s",
            delivery.id,
            delivery.request_id,
            attempt,
            self._settings.max_attempts,
            problem,
            "" if retry_at else "; dead-lettered",
        )

    def _post(self, http, url, envelope):
        """None when the listener acknowledged; otherwise what went wrong."""
        origin = urlsplit(url)
        try:
            response = http.post(
                url,
                data=envelope,
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
                timeout=self._settings.timeout_s,
                proxies=outbound.proxies(f"{origin.scheme}://{origin.netloc}"),
            )
        except requests.RequestException as error:
            return f"listener unreachable ({type(error).__name__})"
        if 200 <= response.status_code < 300:
            return None
        return f"listener answered HTTP {response.status_code}"
