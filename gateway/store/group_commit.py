"""Group commit: what concurrent threads write, written together in one transaction.

Each commit of the store waits for the disk (an fsync with SQLite's
``synchronous=FULL``) and holds the one write lock every thread and process
queues on. Under load, threads that each commit one row spend their time
queuing for that lock. Here the first thread to arrive writes its row and
every row queued while it did so, in one transaction; each thread gets its
own row's result, or the error of the transaction its row was in. No thread
of its own: whoever waits writes, so there is nothing to start or stop.

A thread whose row is not written within ``wait_s`` (the store hangs, or
the writer before it does) gets StoreUnavailable. A row still queued then is
withdrawn; one already in a transaction may still be written: callers use
this only for writes that are harmless to repeat (a callback's dedupe key, a
settlement only the claim's holder can make).
"""

import copy
import threading
import time

from gateway.exceptions import StoreUnavailable

# Rows written in one transaction at most: a long transaction holds the
# write lock from other processes for as long.
MAX_ROWS = 256


class _Waiter:
    __slots__ = ("row", "done", "result", "error")

    def __init__(self, row):
        self.row = row
        self.done = False
        self.result = None
        self.error = None


class GroupCommit:
    def __init__(self, write_rows, wait_s, what):
        """``write_rows(rows) -> results``: one transaction, a result per row, in order.
        ``what`` names the rows in the error of a caller that waited too long."""
        self._write_rows = write_rows
        self._wait_s = wait_s
        self._what = what
        self._queued = []
        self._queue_lock = threading.Lock()
        self._writing = threading.Lock()

    def sharing(self, wait_s, what):
        """Another caller's GroupCommit of the same rows: its rows and this one's go in the same
        transactions, each caller waiting its own ``wait_s``."""
        shared = copy.copy(self)  # the queue, its locks and write_rows are the same objects
        shared._wait_s, shared._what = wait_s, what
        return shared

    def write(self, row):
        """``row``'s result, once the transaction it went in committed; its error if that failed."""
        waiter = _Waiter(row)
        with self._queue_lock:
            self._queued.append(waiter)
        deadline = time.monotonic() + self._wait_s
        while not waiter.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._writing.acquire(timeout=remaining):
                self._withdraw(waiter)
                raise StoreUnavailable(f"{self._what} not written within {self._wait_s:g} s: the store is too slow")
            try:
                if not waiter.done:  # nobody took it along: write it, and whatever else is queued
                    self._write_queued()
            finally:
                self._writing.release()
        if isinstance(waiter.error, StoreUnavailable):
            raise StoreUnavailable(str(waiter.error)) from waiter.error  # one exception per thread that raises it
        if waiter.error is not None:
            raise RuntimeError(f"writing {self._what} failed") from waiter.error
        return waiter.result

    def _withdraw(self, waiter):
        with self._queue_lock:
            if waiter in self._queued:  # not yet taken into a transaction: it never will be
                self._queued.remove(waiter)

    def _write_queued(self):
        with self._queue_lock:
            batch = self._queued[:MAX_ROWS]
            del self._queued[:MAX_ROWS]  # in place: callers sharing the queue see it too
        try:
            results = self._write_rows([waiter.row for waiter in batch])
        except Exception as error:  # noqa: BLE001 - every waiter of the batch gets it, none is left waiting
            for waiter in batch:
                waiter.error, waiter.done = error, True
            return
        for waiter, result in zip(batch, results, strict=True):
            waiter.result, waiter.done = result, True
