"""The gateway's store in one SQLite file, shared safely by the processes of one host.

Everything SQLite-specific lives here: the PRAGMAs, the per-thread
connections, the locking. The SQL itself stays plain so that another backend
can offer the same methods.

Every write runs in a ``BEGIN IMMEDIATE`` transaction: it takes the file's
write lock up front, so concurrent writers (other threads, other processes)
queue on the busy timeout instead of failing halfway through a
read-then-write. Timestamps are epoch seconds given by the caller; the store
never reads the clock.
"""

import json
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from gateway.store.records import CLAIMED, DEAD, DELIVERED, PENDING, Delivery, OutboxEntry, Registration

BUSY_TIMEOUT_S = 10
LAST_ERROR_MAX_CHARS = 500

# MIGRATIONS[n] takes the schema from version n to n + 1 (PRAGMA user_version).
# Append to it; never edit a step that has shipped.
MIGRATIONS = (
    (
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE registrations (
            account TEXT NOT NULL,
            service TEXT NOT NULL,
            url TEXT NOT NULL,
            username TEXT,
            password TEXT,
            PRIMARY KEY (account, service)
        )""",
        """CREATE TABLE requests (
            request_id TEXT PRIMARY KEY,
            kind_spellings TEXT NOT NULL,
            remembered_at REAL NOT NULL
        )""",
        "CREATE INDEX requests_remembered_at ON requests (remembered_at)",
        # AUTOINCREMENT: an id is never reused after a purge, so an id an
        # operator or a stale worker holds can only ever name one callback.
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            dedupe_key TEXT NOT NULL UNIQUE,
            account TEXT NOT NULL,
            service TEXT NOT NULL,
            request_id TEXT,
            body TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'claimed', 'delivered', 'dead')),
            attempts INTEGER NOT NULL,
            received_at REAL NOT NULL,
            next_attempt_at REAL NOT NULL,
            claimed_by TEXT,
            claimed_until REAL,
            delivered_at REAL,
            last_error TEXT,
            last_error_at REAL
        )""",
        "CREATE INDEX outbox_state_next_attempt_at ON outbox (state, next_attempt_at)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

# An entry is due when its next attempt has come, or when the worker that
# claimed it let its lease run out (it died or hung): someone else takes over.
_DUE = f"""(o.state = '{PENDING}' AND o.next_attempt_at <= :now)
    OR (o.state = '{CLAIMED}' AND o.claimed_until < :now)"""
_HAS_LISTENER = "EXISTS (SELECT 1 FROM registrations r WHERE r.account = o.account AND r.service = o.service)"

_OUTBOX_ENTRY_COLUMNS = "id, account, service, request_id, state, attempts, received_at, next_attempt_at, last_error"
_LISTED_STATES = {PENDING: (PENDING, CLAIMED), DEAD: (DEAD,)}

_CALLBACK_USERNAME_KEY = "callback_username"
_CALLBACK_PASSWORD_KEY = "callback_password"


def _switch_to_wal(db):
    """Put the file in WAL mode (persistent in the file; a no-op once done).

    Not a migration step: it cannot run inside a transaction. And on a new
    file that several processes open at once, SQLite answers SQLITE_BUSY
    at once instead of waiting out the busy timeout (the switch holds a read
    lock that wants to become a write lock, which SQLite never lets wait, to
    avoid deadlocks), so the waiting is done here.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class SqliteStore:
    """The store; one per process, shared by its threads (each gets its own connection).

    Open it in each process after any fork: a connection must not cross one.
    """

    def __init__(self, path):
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections = {}
        self._closed = False
        _switch_to_wal(self._connection())
        self._migrate()

    def close(self):
        """Close every connection of this store, for shutdown once its threads are done with it."""
        with self._lock:
            self._closed = True
            for db in self._connections.values():
                db.close()
            self._connections.clear()

    # -- gateway callback credentials -----------------------------------------

    def callback_credentials(self):
        """The (username, password) ThingSpace must send with its callbacks, made on first use."""
        generated = {
            _CALLBACK_USERNAME_KEY: secrets.token_urlsafe(12),
            _CALLBACK_PASSWORD_KEY: secrets.token_urlsafe(32),
        }
        with self._write() as db:
            # Another process may have made them first: then theirs win, for everyone.
            db.executemany("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", generated.items())
            stored = dict(db.execute("SELECT key, value FROM settings WHERE key IN (?, ?)", tuple(generated)))
        return stored[_CALLBACK_USERNAME_KEY], stored[_CALLBACK_PASSWORD_KEY]

    # -- legacy listeners' registrations --------------------------------------

    def put_registration(self, account, service, url, username, password):
        with self._write() as db:
            db.execute(
                """INSERT INTO registrations (account, service, url, username, password)
                VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (account, service) DO UPDATE
                SET url = excluded.url, username = excluded.username, password = excluded.password""",
                (account, service, url, username, password),
            )

    def delete_registration(self, account, service):
        with self._write() as db:
            cursor = db.execute("DELETE FROM registrations WHERE account = ? AND service = ?", (account, service))
        return cursor.rowcount == 1

    def registration(self, account, service):
        row = self._read(
            "SELECT account, service, url, username, password FROM registrations WHERE account = ? AND service = ?",
            (account, service),
        ).fetchone()
        return Registration(*row) if row else None

    def registrations(self, account=None):
        rows = self._read(
            """SELECT account, service, url, username, password FROM registrations
            WHERE ? IS NULL OR account = ? ORDER BY account, service""",
            (account, account),
        )
        return [Registration(*row) for row in rows]

    # -- what each ThingSpace request asked for ------------------------------

    def remember_request(self, request_id, kind_spellings, now):
        with self._write() as db:
            db.execute(
                """INSERT INTO requests (request_id, kind_spellings, remembered_at) VALUES (?, ?, ?)
                ON CONFLICT (request_id) DO UPDATE
                SET kind_spellings = excluded.kind_spellings, remembered_at = excluded.remembered_at""",
                (request_id, json.dumps(kind_spellings), now),
            )

    def kind_spellings(self, request_id):
        row = self._read("SELECT kind_spellings FROM requests WHERE request_id = ?", (request_id,)).fetchone()
        return json.loads(row[0]) if row else {}

    def forget_requests_before(self, cutoff):
        with self._write() as db:
            return db.execute("DELETE FROM requests WHERE remembered_at < ?", (cutoff,)).rowcount

    # -- the outbox ------------------------------------------------------------

    def add_callback(self, dedupe_key, account, service, request_id, body, now):
        """Store a callback for delivery; False if this dedupe_key was stored before.

        Committed (synchronous=FULL) when this returns: only then may
        ThingSpace be told 2xx.
        """
        with self._write() as db:
            cursor = db.execute(
                f"""INSERT INTO outbox
                (dedupe_key, account, service, request_id, body, state, attempts, received_at, next_attempt_at)
                VALUES (?, ?, ?, ?, ?, '{PENDING}', 0, ?, ?)
                ON CONFLICT (dedupe_key) DO NOTHING""",
                (dedupe_key, account, service, request_id, body, now, now),
            )
        return cursor.rowcount == 1

    def claim_due(self, worker, now, lease_s, limit):
        """Claim for ``worker`` up to ``limit`` due entries that have a listener, oldest first.

        Holding the write lock from the SELECT to the UPDATE is what keeps
        two processes from claiming the same entry. (Not UPDATE ... RETURNING:
        it cannot return the registration's columns nor keep an order.)
        """
        with self._write() as db:
            rows = db.execute(
                f"""SELECT o.id, o.account, o.service, o.request_id, o.body, o.attempts,
                    r.url, r.username, r.password, o.received_at
                FROM outbox o JOIN registrations r ON r.account = o.account AND r.service = o.service
                WHERE {_DUE}
                ORDER BY o.received_at, o.id
                LIMIT :limit""",
                {"now": now, "limit": limit},
            ).fetchall()
            db.executemany(
                f"UPDATE outbox SET state = '{CLAIMED}', claimed_by = ?, claimed_until = ? WHERE id = ?",
                [(worker, now + lease_s, row[0]) for row in rows],
            )
        return [Delivery(*row) for row in rows]

    def mark_delivered(self, id, worker, now):
        """False if ``worker`` no longer holds the entry (its lease ran out and another took it)."""
        return self._settle(id, worker, f"state = '{DELIVERED}', delivered_at = :now", {"now": now})

    def mark_failed(self, id, worker, now, error, retry_at):
        """Count a failed attempt: retry at ``retry_at``, or give up (dead) when it is None.

        False if ``worker`` no longer holds the entry.
        """
        return self._settle(
            id,
            worker,
            """state = :state, attempts = attempts + 1, next_attempt_at = COALESCE(:retry_at, next_attempt_at),
            last_error = :error, last_error_at = :now""",
            {
                "state": DEAD if retry_at is None else PENDING,
                "retry_at": retry_at,
                "error": error[:LAST_ERROR_MAX_CHARS],
                "now": now,
            },
        )

    def outbox(self, state):
        """The entries an operator asks for: ``pending`` (claimed ones included) or ``dead``."""
        if state not in _LISTED_STATES:
            raise ValueError(f"state must be one of {', '.join(_LISTED_STATES)}, got {state!r}")
        states = _LISTED_STATES[state]
        rows = self._read(
            f"""SELECT {_OUTBOX_ENTRY_COLUMNS} FROM outbox
            WHERE state IN ({', '.join('?' * len(states))}) ORDER BY received_at, id""",
            states,
        )
        return [OutboxEntry(*row) for row in rows]

    def counts(self):
        """Number of entries in each state, zeros included."""
        counts = dict.fromkeys((PENDING, CLAIMED, DELIVERED, DEAD), 0)
        counts.update(self._read("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
        return counts

    def retry(self, id, now):
        """Give a dead entry a fresh round of attempts; False if it is not dead."""
        return self._revive(now, id) == 1

    def retry_all(self, now):
        return self._revive(now)

    def expire_waiting(self, now, max_age_s):
        """Give up (dead) the pending entries that have waited ``max_age_s`` for a listener to register.

        Waiting since next_attempt_at, not received_at: an entry an operator
        retries, or whose listener went away after a failure, gets the full wait again.
        """
        with self._write() as db:
            return db.execute(
                f"""UPDATE outbox AS o SET state = '{DEAD}', last_error = :error, last_error_at = :now
                WHERE o.state = '{PENDING}' AND o.next_attempt_at < :now - :max_age_s AND NOT {_HAS_LISTENER}""",
                {"now": now, "max_age_s": max_age_s, "error": f"no listener registered within {max_age_s:g} s"},
            ).rowcount

    def next_due_at(self):
        """When claim_due will next find something, or None if no entry with a listener is waiting.

        Includes the leases of claimed entries: if their worker dies, they
        come due when the lease runs out.
        """
        return self._read(
            f"""SELECT MIN(CASE o.state WHEN '{PENDING}' THEN o.next_attempt_at ELSE o.claimed_until END)
            FROM outbox o WHERE o.state IN ('{PENDING}', '{CLAIMED}') AND {_HAS_LISTENER}"""
        ).fetchone()[0]

    def purge_delivered_before(self, cutoff):
        """Forget delivered entries, and so their dedupe keys: keep them longer than ThingSpace retries."""
        with self._write() as db:
            return db.execute(f"DELETE FROM outbox WHERE state = '{DELIVERED}' AND delivered_at < ?", (cutoff,)).rowcount

    # -- internals ---------------------------------------------------------------

    def _settle(self, id, worker, assignments, values):
        with self._write() as db:
            cursor = db.execute(
                f"""UPDATE outbox SET {assignments}, claimed_by = NULL, claimed_until = NULL
                WHERE id = :id AND state = '{CLAIMED}' AND claimed_by = :worker""",
                {**values, "id": id, "worker": worker},
            )
        return cursor.rowcount == 1

    def _revive(self, now, id=None):
        with self._write() as db:
            return db.execute(
                f"""UPDATE outbox SET state = '{PENDING}', attempts = 0, next_attempt_at = :now
                WHERE state = '{DEAD}' AND (:id IS NULL OR id = :id)""",
                {"now": now, "id": id},
            ).rowcount

    def _migrate(self):
        # Under the write lock, so that of several processes opening a new
        # file at once exactly one creates the schema and the others see it.
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self._path} has schema version {version}, newer than this gateway's {SCHEMA_VERSION}"
                )
            for step in MIGRATIONS[version:]:
                for statement in step:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _write(self):
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.commit()
        except BaseException:
            db.rollback()
            raise

    def _read(self, sql, parameters=()):
        return self._connection().execute(sql, parameters)

    def _connection(self):
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    def _connect(self):
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the store is closed")
            # The threaded HTTP server starts a thread per request: close what
            # the finished ones left behind rather than leak a file handle each.
            for thread in [thread for thread in self._connections if not thread.is_alive()]:
                self._connections.pop(thread).close()
            # isolation_level=None: no implicit transactions, ours are explicit.
            # check_same_thread=False: only so that close() and the sweep
            # above can close another thread's connection.
            db = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            # Per connection, not stored in the file. FULL: an acknowledged
            # callback must survive a power loss, not just a crash.
            db.execute("PRAGMA synchronous = FULL")
            self._connections[threading.current_thread()] = db
            return db
