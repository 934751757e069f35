"""The gateway's store in one SQLite file, shared safely by the processes of one host.

What is SQLite's lives here: the schema's types, the PRAGMAs, the per-thread
connections, the locking; the store's methods are ``SqlStore``'s.

Every write runs in a ``BEGIN IMMEDIATE`` transaction: it takes the file's
write lock up front, so concurrent writers (other threads, other processes)
queue on the busy timeout instead of failing halfway through a
read-then-write. That lock is also what keeps two claimers off the same entry.

A process's writes run one at a time on its one writer connection,
whichever thread makes them; reads run on a connection per thread. The
writer keeps its page cache and its prepared statements from one
transaction to the next: a connection per thread found its cache stale at
nearly every write, as another connection had written since.
"""

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from gateway.exceptions import StoreUnavailable
from gateway.store.schema import migrations
from gateway.store.sql import SqlStore, StoreClosed

# How long a write waits for another process's write lock before the store
# is called unavailable: a few seconds, so that ThingSpace hears 503 and sends
# again rather than waiting out its own timeout.
BUSY_TIMEOUT_S = 5
# How often a writer tries again for the write lock another process holds:
# every BUSY_POLL_S for the first BUSY_POLL_QUICKLY_S, then every BUSY_POLL_SLOWLY_S.
BUSY_POLL_S = 0.0005
BUSY_POLL_QUICKLY_S = 0.05
BUSY_POLL_SLOWLY_S = 0.005
# Less free space than this on the file's disk and /readyz says the store is
# full: a write may fail at any moment (SQLite itself answers SQLITE_FULL).
MIN_FREE_BYTES = 1 << 20
# Every commit reaches the disk before it returns: an acknowledged callback
# must survive a power loss, not just a crash.
SYNCHRONOUS = "FULL"

# The schema's steps (gateway/store/schema.py) in SQLite's types; the
# version is PRAGMA user_version.
MIGRATIONS = migrations(
    epoch="REAL",
    # AUTOINCREMENT: never reuses the id of a deleted row.
    callback_id="INTEGER PRIMARY KEY AUTOINCREMENT",
    attempt_id="INTEGER PRIMARY KEY",  # the rowid
    boolean="INTEGER",
)


def _switch_to_wal(db, busy_timeout_s):
    """Put the file in WAL mode (persistent in the file; a no-op once done).

    Not a migration step: it cannot run inside a transaction. And on a new
    file that several processes open at once, SQLite answers SQLITE_BUSY
    at once instead of waiting out the busy timeout (the switch holds a read
    lock that wants to become a write lock, which SQLite never lets wait, to
    avoid deadlocks), so the waiting is done here.
    """
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _begin(db, deadline, busy_timeout_s):
    """BEGIN IMMEDIATE on a writer (no busy handler): the write lock, waited for until
    ``deadline`` while another process holds it.

    Not with SQLite's busy handler: it sleeps 1, 2, 5, 10 ... 100 ms between
    tries, so under load a writer slept long after the lock came free (in
    the callback bench, writers waited there seven times as long as for
    their commits). Tried again every half millisecond instead, every 5 ms
    once it has waited long enough to look like an outage. Once BEGIN
    IMMEDIATE holds the lock, nothing else of a transaction waits for one
    in WAL mode.
    """
    while True:
        try:
            db.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            now = time.monotonic()
            if error.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or now >= deadline:
                raise
        time.sleep(BUSY_POLL_S if deadline - now > busy_timeout_s - BUSY_POLL_QUICKLY_S else BUSY_POLL_SLOWLY_S)


class SqliteStore(SqlStore):
    """The store in one file; each thread of the process gets its own connection."""

    MIGRATIONS = MIGRATIONS
    # A correlated IN list: SQLite has no LATERAL, and looks the ids up by rowid.
    CLAIM_JOIN = "JOIN outbox o ON o.id IN (SELECT due.id {listener_due})"
    # Without statistics SQLite's planner prefers the state index: a claim
    # sorted every due entry (3 ms of CPU at 5,000), next_due_at walked them all.
    LISTENER_INDEX = "INDEXED BY outbox_listener_due"
    NEXT_DUE_INDEX = "INDEXED BY outbox_listener_next_due"
    # Locked past the busy timeout, disk full, an I/O error, a file that cannot be opened.
    UNAVAILABLE = (sqlite3.OperationalError,)

    def __init__(self, path, busy_timeout_s=BUSY_TIMEOUT_S, lazy=False, secret_keys=()):
        self._path = Path(path)
        self.location = f"[store] path ({self._path})"
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._connections = {}  # thread -> its reading connection
        self._writer_db = None  # the writer connection, used under self._writing only
        self._closed = False
        super().__init__(lazy, secret_keys)

    def _prepare(self):
        with self._unavailable_on_error():
            self._path.parent.mkdir(parents=True, exist_ok=True)
            _switch_to_wal(self._connection(), self._busy_timeout_s)
        self._migrate()
        with self._unavailable_on_error():
            if self._resealed:
                # Into the file, and out of the WAL, which still holds the pages as they were.
                # On the writer, which wrote them: from this thread's reading connection
                # the checkpoint waited out the busy timeout, then left them there.
                with self._writing:
                    self._writer().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _close_connections(self):
        with self._lock:
            self._closed = True
            for db in [*self._connections.values(), *filter(None, [self._writer_db])]:
                db.close()
            self._connections.clear()
            self._writer_db = None

    def health(self):
        super().health()
        free = _free_bytes(self._path.parent)
        if free < MIN_FREE_BYTES:
            raise StoreUnavailable(f"{self.location} is unavailable: its disk is full ({free} bytes free)")

    @contextmanager
    def _transaction(self, flushed=True):
        deadline = time.monotonic() + self._busy_timeout_s
        # This process's writers queue here, each woken as soon as the one
        # before is done, rather than on SQLite's lock (see _begin).
        if not self._writing.acquire(timeout=self._busy_timeout_s):
            raise sqlite3.OperationalError("database is locked: this process's other writers held it too long")
        try:
            db = self._writer()
            if not flushed:
                # In WAL mode: committed without waiting for the disk; the next
                # FULL commit or checkpoint flushes it.
                db.execute("PRAGMA synchronous = NORMAL")
            try:
                _begin(db, deadline, self._busy_timeout_s)
                yield db
                db.commit()
            except BaseException:
                try:
                    db.rollback()
                except sqlite3.Error:  # no knowing what state it is in: never hand it out again
                    self._drop_writer()
                raise
            finally:
                if not flushed and self._writer_db is db:  # not if it was dropped
                    db.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
        finally:
            self._writing.release()

    def _query(self, sql, parameters=None):
        return self._connection().execute(sql, parameters or ()).fetchall()

    @contextmanager
    def _migration(self):
        # Under the write lock, so that of several processes opening a new file
        # at once exactly one creates the schema and the others see it.
        with self._transaction() as db:
            # While secrets may be sealed anew: their plaintext is overwritten, not just freed.
            db.execute("PRAGMA secure_delete = ON")
            try:
                yield db
            finally:
                db.execute("PRAGMA secure_delete = OFF")

    def _schema_version(self, db):
        return db.execute("PRAGMA user_version").fetchone()[0]

    def _set_schema_version(self, db, version):
        db.execute(f"PRAGMA user_version = {version:d}")

    def _connection(self):
        if self._closed:
            raise StoreClosed("the store is closed")
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    def _writer(self):
        """The writer connection; the caller holds ``self._writing``."""
        if self._writer_db is None:
            with self._lock:
                if self._closed:
                    raise StoreClosed("the store is closed")
                # No busy handler: _begin waits for the write lock, and nothing else waits for one.
                self._writer_db = self._open(busy_timeout_s=0)
        return self._writer_db

    def _drop_writer(self):
        with self._lock:
            db, self._writer_db = self._writer_db, None
        if db is not None:
            db.close()

    def _connect(self):
        with self._lock:
            if self._closed:
                raise StoreClosed("the store is closed")
            # The threaded HTTP server starts a thread per request: close what
            # the finished ones left behind rather than leak a file handle each.
            for thread in [thread for thread in self._connections if not thread.is_alive()]:
                self._connections.pop(thread).close()
            db = self._connections[threading.current_thread()] = self._open(self._busy_timeout_s)
            return db

    def _open(self, busy_timeout_s):
        # isolation_level=None: no implicit transactions, ours are explicit.
        # check_same_thread=False: so that the writer serves every thread, and
        # close() and the sweep in _connect can close another thread's connection.
        db = sqlite3.connect(self._path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        # Per connection, not stored in the file.
        db.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
        return db


def _free_bytes(directory):
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize
