"""Sends goToState callbacks in the background, retrying until acknowledged.

One timer thread keeps the deliveries ordered by when they are due and hands
each due one to a small pool of senders: a slow or dead listener delays only
its own retries, and a 10,000-device request needs no 10,000 threads.
"""

import heapq
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import requests

from gateway.simulator.devices import DeviceOutcome
from gateway.simulator.state import CallbackRegistration

log = logging.getLogger("gateway.simulator")

POST_TIMEOUT_S = 3.0
SENDER_THREADS = 8


@dataclass
class Delivery:
    """One device's callback on its way to the registered listener."""

    registration: CallbackRegistration
    request_id: str
    outcome: DeviceOutcome
    attempt: int = 1

    def body(self, max_attempts):
        """The callback JSON, shaped as the REST document's example."""
        return {
            "username": self.registration.username,
            "password": self.registration.password,
            "requestId": self.request_id,
            "deviceIds": [self.outcome.first_id],
            "deviceResponse": {"goToStateResponse": self.outcome.go_to_state_response},
            "status": self.outcome.status,
            "callbackCount": self.attempt,
            "maxCallbackThreshold": max_attempts,
        }


def _without_credentials(url):
    """``url`` fit for a log line: any user:password@ dropped."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class CallbackSender:
    def __init__(self, retry_s, max_attempts):
        self._retry_s, self._max_attempts = retry_s, max_attempts
        self._due = []  # heap of (monotonic due time, sequence, Delivery)
        # Breaks ties in submission order, so the heap never compares Deliveries.
        self._sequence = itertools.count()
        self._changed = threading.Condition()
        self._closed = False
        self._senders = ThreadPoolExecutor(SENDER_THREADS, thread_name_prefix="simulator-callback")
        self._timer = threading.Thread(target=self._hand_out_due, name="simulator-callback-timer", daemon=True)
        self._timer.start()

    def send_later(self, deliveries, delay_s):
        due = time.monotonic() + delay_s
        with self._changed:
            for delivery in deliveries:
                heapq.heappush(self._due, (due, next(self._sequence), delivery))
            self._changed.notify()

    def close(self):
        """Stop sending; callbacks not yet sent are dropped, one being sent is waited for (POST_TIMEOUT_S at most).

        Waited for: a sender that outlived close() would log into whatever
        its owner (a test) has closed since.
        """
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._timer.join()
        self._senders.shutdown(wait=True, cancel_futures=True)

    def _hand_out_due(self):
        with self._changed:
            while not self._closed:
                now = time.monotonic()
                if self._due and self._due[0][0] <= now:
                    self._senders.submit(self._attempt, heapq.heappop(self._due)[2])
                else:
                    self._changed.wait(self._due[0][0] - now if self._due else None)

    def _attempt(self, delivery):
        url = delivery.registration.url
        try:
            status = requests.post(url, json=delivery.body(self._max_attempts), timeout=POST_TIMEOUT_S).status_code
            result, acknowledged = f"HTTP {status}", 200 <= status < 300
        except requests.RequestException as error:
            result, acknowledged = f"failed ({type(error).__name__})", False
        outcome = delivery.outcome
        log.info(
            "callback requestId=%s device=%s status=%s -> %s %s",
            delivery.request_id, outcome.first_id["id"], outcome.status, _without_credentials(url), result,
        )
        if acknowledged:
            return
        if delivery.attempt >= self._max_attempts:
            log.warning(
                "callback requestId=%s device=%s not acknowledged after %d attempts: giving up",
                delivery.request_id, outcome.first_id["id"], delivery.attempt,
            )
            return
        delivery.attempt += 1
        self.send_later([delivery], self._retry_s)
