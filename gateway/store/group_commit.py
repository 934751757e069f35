"""Group commit: what concurrent threads write, written together in one transaction.

Each commit of the store waits for the disk (an fsync with SQLite's
``synchronous=FULL``) and holds the one write lock every thread and process
queues on. Under load, threads that each commit one row spend their time
queuing for that lock. Here the first thread to arrive writes its row and
every row queued until its transaction holds that lock, in one transaction;
each thread gets its own row's result, or the error of the transaction its
row was in. No thread of its own: whoever waits writes, so there is nothing
to start or stop.

The rows are taken once the lock is held, not before the wait for it: with
SQLite, another process's transaction holds it as often as not, and the
rows queued meanwhile used to wait for a transaction of their own after it.

A thread whose row is not written within ``wait_s`` (the store hangs, or
the writer before it does) gets StoreUnavailable. A row still queued then is
withdrawn; one already in a transaction may still be written: callers use
this only for writes that are harmless to repeat (a callback's dedupe key, a
settlement only the claim's holder can make).
"""

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
    def __init__(self, write_rows):
        """``write_rows(gather) -> results``: one transaction, a result per row, in order, of the
        rows ``gather()`` returns, called once in it, when it holds the store's write lock."""
        self._write_rows = write_rows
        self._queued = []
        self._queue_lock = threading.Lock()
        self._writing = threading.Lock()

    def write(self, row, wait_s, what):
        """``row``'s result, once the transaction it went in committed; its error if that failed.

        Waits up to ``wait_s``; ``what`` names the row in the error past it.
        Callers waiting different times share the transactions all the same.
        """
        [result] = self.write_all([row], wait_s, what)
        if isinstance(result, Exception):
            raise result
        return result

    def write_all(self, rows, wait_s, what, linger_s=0.0):
        """Each of ``rows``' results, in order, as ``write`` would return it, or the error it
        would raise: rows queued together, as one caller's, may still be split between
        transactions (MAX_ROWS), and one of those fail while another commits.

        ``linger_s``: how long the rows wait, queued, for another caller's transaction to
        take them along before this caller writes them itself: for a caller in no hurry,
        whose transactions would otherwise come between the others' and add to them.
        """
        waiters = [_Waiter(row) for row in rows]
        with self._queue_lock:
            self._queued.extend(waiters)
        if linger_s:
            time.sleep(linger_s)
        deadline = time.monotonic() + wait_s
        while not waiters[-1].done:  # taken in queue order: the last one done, every one is
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._writing.acquire(timeout=remaining):
                self._withdraw(waiters)
                late = StoreUnavailable(f"{what} not written within {wait_s:g} s: the store is too slow")
                return [_result(waiter, what) if waiter.done else late for waiter in waiters]
            try:
                if not waiters[-1].done:  # nobody took them along: write them, and whatever else is queued
                    self._write_queued()
            finally:
                self._writing.release()
        return [_result(waiter, what) for waiter in waiters]

    def _withdraw(self, waiters):
        withdrawn = set(waiters)
        with self._queue_lock:
            # Those not yet taken into a transaction never will be.
            self._queued = [waiter for waiter in self._queued if waiter not in withdrawn]

    def _write_queued(self):
        batch = []

        def gather():
            with self._queue_lock:
                batch[:], self._queued = self._queued[:MAX_ROWS], self._queued[MAX_ROWS:]
            return [waiter.row for waiter in batch]

        try:
            results = self._write_rows(gather)
        except Exception as error:  # noqa: BLE001 - every waiter of the batch gets it, none is left waiting
            if not batch:
                # Failed before it held the lock: what queued while it waited fails with it (it
                # waited as long), rather than each row waiting out the store's timeout again.
                gather()
            for waiter in batch:
                waiter.error, waiter.done = error, True
            return
        for waiter, result in zip(batch, results, strict=True):
            waiter.result, waiter.done = result, True


def _result(waiter, what):
    """The waiter's result, or the error its caller raises: one exception per caller, caused by the transaction's."""
    if waiter.error is None:
        return waiter.result
    if isinstance(waiter.error, StoreUnavailable):
        failed = StoreUnavailable(str(waiter.error))
    else:
        failed = RuntimeError(f"writing {what} failed")
    failed.__cause__ = waiter.error
    return failed
