"""Prometheus metrics, summed over gunicorn's worker processes.

Counters live in each worker process; under ``m2m-gateway serve`` the server
points ``PROMETHEUS_MULTIPROC_DIR`` at a directory of its own before any
worker imports this module, and a scrape of any worker adds up all of them.
The outbox is read from the store at scrape time: it is shared state, not a
per-process count.
"""

import glob
import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app, multiprocess
from prometheus_client.core import GaugeMetricFamily

from gateway.exceptions import StoreUnavailable

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

SOAP_REQUESTS = Counter(
    "m2mgw_soap_requests_total",
    "Legacy SOAP requests by service, operation and outcome (ok, client_fault, upstream_fault, server_fault)",
    ["service", "operation", "outcome"],
)
UPSTREAM_SECONDS = Histogram(
    "m2mgw_upstream_request_seconds",
    "Time of each ThingSpace call, answered or not",
    ["call"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CALLBACKS_RECEIVED = Counter(
    "m2mgw_callbacks_received_total", "ThingSpace callbacks received, by outcome (stored, duplicate, refused, unavailable)",
    ["outcome"],
)
CALLBACKS_DELIVERED = Counter("m2mgw_callbacks_delivered_total", "Callbacks a legacy listener acknowledged")
CALLBACKS_RETRIED = Counter("m2mgw_callbacks_retried_total", "Failed deliveries that will be tried again")
CALLBACKS_DEAD = Counter("m2mgw_callbacks_dead_total", "Callbacks dead-lettered after their last attempt")
STORE_ERRORS = Counter(
    "m2mgw_store_errors_total", "Store calls that failed: database unreachable, file locked, disk full"
)
WORKER_RESTARTS = Counter(
    "m2mgw_worker_restarts_total", "Steps of a background loop that failed and were tried again, by loop", ["loop"]
)
# The newest of all processes': an instance delivers while any of its workers does.
DELIVERY_PASS_COMPLETED = Gauge(
    "m2mgw_delivery_last_pass_timestamp_seconds",
    "When a delivery pass (claim, send, record) last completed, epoch seconds",
    multiprocess_mode="max",
)
PROCESS_METRICS = (
    SOAP_REQUESTS,
    UPSTREAM_SECONDS,
    CALLBACKS_RECEIVED,
    CALLBACKS_DELIVERED,
    CALLBACKS_RETRIED,
    CALLBACKS_DEAD,
    STORE_ERRORS,
    WORKER_RESTARTS,
    DELIVERY_PASS_COMPLETED,
)


class OutboxCollector:
    """Outbox depth by state and the age of the oldest callback waiting, from the store.

    While the store is down these are left out of the scrape (the process
    counters, store errors among them, are still served).
    """

    def __init__(self, store, clock=time.time):
        self._store = store
        self._clock = clock

    def collect(self):
        try:
            counts, oldest = self._store.counts(), self._store.oldest_pending_at()
        except StoreUnavailable:
            return
        depth = GaugeMetricFamily("m2mgw_outbox_callbacks", "Callbacks in the outbox, by state", labels=["state"])
        for state, count in sorted(counts.items()):
            depth.add_metric([state], count)
        yield depth
        age = 0.0 if oldest is None else max(0.0, self._clock() - oldest)
        yield GaugeMetricFamily(
            "m2mgw_outbox_oldest_pending_seconds", "Age of the oldest callback not yet delivered (0 when none)", value=age
        )


class SizedFilesCollector(multiprocess.MultiProcessCollector):
    """The workers' counters, from the files of theirs that have been sized.

    prometheus_client creates a worker's file and only then sizes it: a
    scrape in between (a worker just forked, replacing one that exited) read
    it empty and failed whole, with a 500 (prometheus/client_python#1199). A
    file only ever grows from empty, and an empty one holds no sample yet.
    """

    def collect(self):
        files = [path for path in glob.glob(os.path.join(self._path, "*.db")) if os.path.getsize(path) > 0]
        return self.merge(files, accumulate=True)


def metrics_app(store):
    """The WSGI application serving ``/metrics``."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROCESS_DIR):
        SizedFilesCollector(registry)
    else:
        for collector in PROCESS_METRICS:
            registry.register(collector)
    registry.register(OutboxCollector(store))
    return make_wsgi_app(registry)
