"""Group commit: what concurrent threads write, written together in one transaction.

Each commit of the store waits for the disk (an fsync with SQLite's
``synchronous=FULL``) and holds the one write lock every thread and process
queues on. Under load, threads that each commit one row spend their time
queuing for that lock. Here the first thread to arrive writes its row and
every row queued until its transaction holds that lock, in one transaction;
each thread gets its own row's result, or the error of the transaction its
row was in. Whoever waits writes: a thread of the group commit's own writes
only the rows ``submit``ted by callers that cannot wait (an event loop), and
is started with the first of them.

The rows are taken once the lock is held, not before the wait for it: with
SQLite, another process's transaction holds it as often as not, and the
rows queued meanwhile used to wait for a transaction of their own after it.

A thread whose row is not written within ``wait_s`` (the store hangs, or
the writer before it does) gets StoreUnavailable, as does a submitted row's
``done`` once ``expire`` finds it overdue. A row still queued then is
withdrawn; one already in a transaction may still be written: callers use
this only for writes that are harmless to repeat (a callback's dedupe key, a
settlement only the claim's holder can make).
"""

import logging
import threading
import time

from gateway.exceptions import StoreUnavailable
from gateway.supervise import supervised_thread

log = logging.getLogger(__name__)

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


class _Submitted(_Waiter):
    """A row whose caller does not wait: ``on_done(result, error)`` is told once, by whichever
    comes first, its transaction or ``expire`` past ``deadline`` (``time.monotonic()``)."""

    __slots__ = ("deadline", "wait_s", "what", "on_done")

    def __init__(self, row, wait_s, what, on_done):
        super().__init__(row)
        self.deadline = time.monotonic() + wait_s
        self.wait_s, self.what, self.on_done = wait_s, what, on_done


class GroupCommit:
    def __init__(self, write_rows):
        """``write_rows(gather) -> results``: one transaction, a result per row, in order, of the
        rows ``gather()`` returns, called once in it, when it holds the store's write lock."""
        self._write_rows = write_rows
        self._queued = []
        self._queue_lock = threading.Lock()
        self._writing = threading.Lock()  # held by the thread writing a transaction
        # Notified when a transaction ends, a row is submitted, or closing begins: a waiting
        # thread's row may be done, or it may write (the writer thread, one submitted).
        self._changed = threading.Condition(self._queue_lock)
        # Rows submitted and not yet told their outcome (a dict: ordered); guarded by _queue_lock.
        self._submitted = {}
        self._writer = None
        # Whether the writer thread waits for a row to be submitted (not for a transaction to end).
        self._writer_idle = False
        self._closing = threading.Event()

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
        last = waiters[-1]  # taken in queue order: the last one done, every one is
        with self._queue_lock:
            self._queued.extend(waiters)
            lingering_until = time.monotonic() + linger_s
            while not last.done and (lingering := lingering_until - time.monotonic()) > 0:
                self._changed.wait(lingering)
        deadline = time.monotonic() + wait_s
        while True:
            with self._queue_lock:
                # Told when a transaction ends, not when the next begins: the writer
                # thread may write one after another while rows keep being submitted.
                while not last.done and self._writing.locked() and (remaining := deadline - time.monotonic()) > 0:
                    self._changed.wait(remaining)
                if last.done:
                    break
                if deadline <= time.monotonic():
                    # Those not yet taken into a transaction never will be.
                    withdrawn = set(waiters)
                    self._queued = [waiter for waiter in self._queued if waiter not in withdrawn]
                    late = StoreUnavailable(f"{what} not written within {wait_s:g} s: the store is too slow")
                    return [_result(waiter, what) if waiter.done else late for waiter in waiters]
            self._lead()  # nobody took them along: write them, and whatever else is queued
        return [_result(waiter, what) for waiter in waiters]

    def submit(self, row, wait_s, what, on_done):
        """Queue ``row`` and return at once; ``on_done(result, error)`` is called once, from
        another thread: after the transaction it went in, or with StoreUnavailable once
        ``expire`` finds it unwritten ``wait_s`` after now. ``on_done`` must not block.
        """
        submitted = _Submitted(row, wait_s, what, on_done)
        with self._queue_lock:
            if self._writer is None:
                self._writer = supervised_thread("group-commit", self._write_submitted, self._closing)
            self._queued.append(submitted)
            self._submitted[submitted] = None
            if self._writer_idle:  # else it writes what is queued when its transaction, or another's, ends
                self._changed.notify_all()

    def expire(self):
        """Tell each submitted row overdue that it was not written: StoreUnavailable.

        One queued still is withdrawn; one in a transaction that hangs may yet
        be written, as a waiting thread's may (see above). Called by whoever
        submits, often (the writer that would tell them is the one hanging).
        """
        if not self._submitted:  # (read unlocked: called after every select of a busy loop)
            return
        now = time.monotonic()
        with self._queue_lock:
            overdue = [submitted for submitted in self._submitted if submitted.deadline <= now]
            for submitted in overdue:
                del self._submitted[submitted]
                if submitted in self._queued:
                    self._queued.remove(submitted)
        for submitted in overdue:
            error = StoreUnavailable(f"{submitted.what} not written within {submitted.wait_s:g} s: the store is too slow")
            _tell(submitted, None, error)

    def close(self):
        """Stop the writer thread, once the rows submitted so far are told their outcome."""
        with self._queue_lock:
            self._closing.set()
            self._changed.notify_all()
        if self._writer is not None:
            self._writer.join()

    def _write_submitted(self):
        """The writer thread's step: wait for a submitted row to be queued, then write the
        queue (a transaction takes MAX_ROWS at most) until none is, or another thread does."""
        with self._queue_lock:
            while not self._submitted_queued() and not self._closing.is_set():
                self._writer_idle = True
                self._changed.wait()
            self._writer_idle = False
        while True:
            with self._queue_lock:
                while self._writing.locked() and self._submitted_queued():
                    self._changed.wait()
                if not self._submitted_queued():
                    return
            self._lead()

    def _submitted_queued(self):
        return any(isinstance(waiter, _Submitted) for waiter in self._queued)

    def _lead(self):
        """Write what is queued in one transaction, unless another thread is writing one."""
        if not self._writing.acquire(blocking=False):
            return
        try:
            self._write_queued()
        finally:
            self._writing.release()
            with self._queue_lock:
                self._changed.notify_all()

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
        else:
            for waiter, result in zip(batch, results, strict=True):
                waiter.result, waiter.done = result, True
        self._tell_submitted(batch)

    def _tell_submitted(self, batch):
        """Call ``on_done`` of the batch's submitted rows that ``expire`` has not told already."""
        with self._queue_lock:
            told = [waiter for waiter in batch if self._submitted.pop(waiter, False) is None]
        for submitted in told:
            _tell(submitted, submitted.result, submitted.error)


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


def _tell(submitted, result, error):
    try:
        submitted.on_done(result, error)
    except Exception:  # noqa: BLE001 - one caller's failure is its own: the others are told all the same
        log.exception("%s: its outcome could not be told", submitted.what)
