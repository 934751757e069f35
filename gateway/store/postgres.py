"""The gateway's store in PostgreSQL, shared by gateway instances on several hosts.

What is PostgreSQL's lives here: the schema's types, the migration lock, the
connections, and the row locks of a claim; the store's methods are ``SqlStore``'s.

claim_due's SELECT locks the rows it picks (FOR UPDATE SKIP LOCKED) in the
transaction that marks them claimed: claimers on other hosts skip those rows
instead of waiting for them, and never take one twice. Writes are explicit
transactions at READ COMMITTED, so a conditional UPDATE (mark_* by the claim
holder only) that meets a row another transaction just changed re-checks its
WHERE against the committed row. A commit returns once PostgreSQL has flushed
it (synchronous_commit, on by default: keep it on, or an acknowledged
callback can be lost in a server crash).
"""

import re
import threading
from contextlib import contextmanager
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from gateway.store.schema import migrations
from gateway.store.sql import SqlStore, StoreClosed

# Per process. A thread asking for one more waits for one to come back, so a
# burst of requests cannot use up the server's max_connections.
MAX_CONNECTIONS = 8
# Both short: while the database is down, a callback is answered 503 within
# seconds, not after ThingSpace's own timeout.
CONNECTION_WAIT_S = 5
CONNECT_TIMEOUT_S = 3
# The key of the advisory lock under which one instance at a time migrates;
# any constant will do, so long as every gateway version uses the same one.
MIGRATION_LOCK_KEY = 0x6D326D677701

# The schema's steps (gateway/store/schema.py) in PostgreSQL's types; the
# version is kept in the schema_version table.
MIGRATIONS = migrations(
    epoch="DOUBLE PRECISION",  # REAL would be 4 bytes here
    # An identity column's sequence never hands out an id twice.
    callback_id="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    attempt_id="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    boolean="BOOLEAN",
)

# :name, but not the second colon of a :: cast.
_COLON_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


@lru_cache(maxsize=None)
def _psycopg_parameters(sql):
    return _COLON_PARAMETER.sub(r"%(\1)s", sql)


class _ColonParameterCursor(psycopg.Cursor):
    """A cursor that takes the shared SQL's ``:name`` parameters (psycopg's own are ``%(name)s``)."""

    def execute(self, query, params=None, **kwargs):
        return super().execute(_psycopg_parameters(query), params, **kwargs)

    def executemany(self, query, params_seq, **kwargs):
        # Itself, its rowcount the sum of every run's: as sqlite3's executemany (see SqlStore._transaction).
        super().executemany(_psycopg_parameters(query), params_seq, **kwargs)
        return self


class PostgresStore(SqlStore):
    """The store in the PostgreSQL database at ``url`` (libpq's URL or key=value form).

    Keeps a few connections open for the threads of the process; each call
    takes one, checks it still works, and gives it back.
    """

    MIGRATIONS = MIGRATIONS
    # The planner walks each listener's entries by their index unprompted,
    # statistics or not. Not SET enable_sort = off, as when the claim walked
    # one index of the whole outbox: merging the listeners' entries is a sort
    # (of at most listeners x limit rows), and with sorting off its cost
    # estimate set off JIT compilation, 300 ms a claim.
    # The rows as locked (a row changed since the statement began is read
    # again then), not joined again from the statement's snapshot.
    CLAIM_JOIN = "CROSS JOIN LATERAL (SELECT due.* {listener_due}) o"
    # Under the LIMIT of each listener's SELECT: a row another claimer holds
    # is skipped, and the next due one taken in its place. Rows of a listener
    # locked but left out of the claim by its LIMIT are skipped by other
    # claimers only until the claim's transaction ends.
    CLAIM_LOCK = "FOR UPDATE SKIP LOCKED"
    # OperationalError: the server is down, restarting, refusing, or dropped
    # the connection (psycopg marks that connection broken); TimeoutError: no
    # connection came free in time.
    UNAVAILABLE = (psycopg.OperationalError, TimeoutError)

    def __init__(self, url, lazy=False, secret_keys=()):
        self._url = url
        self.location = f"[store] url ({_without_password(url)})"
        self._idle = []  # the connections no thread is using; the last one back is the first out
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._closed = False
        # Also refuses a malformed URL before any connection attempt.
        self._connect_options = {} if "connect_timeout" in conninfo_to_dict(url) else {"connect_timeout": CONNECT_TIMEOUT_S}
        super().__init__(lazy, secret_keys)

    _prepare = SqlStore._migrate

    def _settle_entry(self, db, update, values):
        # One round trip, not two: the settlement writer holds every sender
        # of the process waiting for it, one statement after the other.
        attempt = self._ATTEMPT_OF_SETTLED.format(settled="settled")
        return db.execute(f"WITH settled AS ({update} RETURNING id, attempts, state) {attempt}", values).rowcount == 1

    def _close_connections(self):
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for db in idle:
            db.close()

    @contextmanager
    def _transaction(self, flushed=True):
        with self._connection() as db, db.transaction(), db.cursor() as cursor:
            if not flushed:
                cursor.execute("SET LOCAL synchronous_commit = off")  # this transaction only
            yield cursor

    def _query(self, sql, parameters=None):
        with self._connection() as db:
            return db.execute(sql, parameters).fetchall()

    @contextmanager
    def _migration(self):
        with self._transaction() as db:
            # Held to the end of the transaction: of several instances
            # starting at once, one migrates, the others then find it done.
            db.execute("SELECT pg_advisory_xact_lock(:key)", {"key": MIGRATION_LOCK_KEY})
            db.execute(
                """CREATE TABLE IF NOT EXISTS schema_version (
                    version INTEGER PRIMARY KEY,
                    migrated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
                )"""
            )
            yield db

    def _schema_version(self, db):
        return db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]

    def _set_schema_version(self, db, version):
        db.execute("INSERT INTO schema_version (version) VALUES (:version)", {"version": version})

    @contextmanager
    def _connection(self):
        if not self._slots.acquire(timeout=CONNECTION_WAIT_S):
            raise TimeoutError(f"no connection to the store came free within {CONNECTION_WAIT_S} s")
        try:
            db = self._working_idle_connection() or self._connect()
            try:
                yield db
            finally:
                self._give_back(db)
        finally:
            self._slots.release()

    def _working_idle_connection(self):
        """An idle connection that still answers, or None.

        One round trip, and worth it: the server may have dropped any of them
        since (a restart, a failover, an idle timeout); a dead one is closed
        and the next tried, so a call after an outage reconnects rather than fails.
        """
        while True:
            with self._lock:
                if self._closed:
                    raise StoreClosed("the store is closed")
                if not self._idle:
                    return None
                db = self._idle.pop()
            try:
                db.execute("")
                return db
            except psycopg.OperationalError:
                db.close()

    def _give_back(self, db):
        reusable = not db.broken and not db.closed and db.info.transaction_status == TransactionStatus.IDLE
        with self._lock:
            if reusable and not self._closed:
                self._idle.append(db)
                return
        db.close()

    def _connect(self):
        # autocommit: a read is one statement on its own, a write opens its
        # transaction explicitly (db.transaction()), and no connection waits
        # idle in a transaction between two calls.
        return psycopg.connect(
            self._url, autocommit=True, cursor_factory=_ColonParameterCursor, **self._connect_options
        )


def _without_password(url):
    """``url`` fit for a log line: any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    credentials, _, host = parts.netloc.rpartition("@")
    username = credentials.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{username}:***@{host}"))
