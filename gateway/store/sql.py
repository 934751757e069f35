"""The store's behaviour, written once in SQL that both backends run.

``SqlStore`` holds every public method of the store. A backend subclass says
how to reach its database: connections, transactions, where the schema
version is kept and what keeps two claimers off the same outbox entry. The
statements here are plain SQL that SQLite and PostgreSQL both accept, with
parameters named SQLite's way (``:name``). Timestamps are epoch seconds given
by the caller; the store never reads the clock.
"""

import functools
import json
import secrets
import threading
from abc import ABC, abstractmethod
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from gateway.exceptions import ConfigError, StoreUnavailable
from gateway.metrics import STORE_ERRORS
from gateway.store.group_commit import GroupCommit
from gateway.store.sealing import InvalidToken, Plaintext, SecretBox
from gateway.store.records import (
    CLAIMED,
    DEAD,
    DELIVERED,
    PENDING,
    Attempt,
    Delivery,
    ForwardedRequest,
    OutboxEntry,
    ReceivedCallback,
    Registration,
    Settlement,
    StoredCallback,
)

LAST_ERROR_MAX_CHARS = 500
# A callback stored claimed goes ahead of older entries of its listener that
# came due this recently: those are about to be claimed (their wake is on its
# way). Past this, they go first, and the new one waits its turn unclaimed.
HAND_OFF_OVERTAKES_S = 0.1

# An entry is due when its next attempt has come, or when the worker that
# claimed it let its lease run out (it died or hung): someone else takes over.
# Its first term is the condition of the index outbox_listener_due (schema
# step 4), as written there: SQLite uses a partial index only for a query that says so.
_DUE = f"""due.state IN ('{PENDING}', '{CLAIMED}')
    AND ((due.state = '{PENDING}' AND due.next_attempt_at <= :now) OR (due.state = '{CLAIMED}' AND due.claimed_until < :now))"""
# When an entry not delivered comes due: written as in the index outbox_listener_next_due.
_NEXT_DUE = f"(CASE o.state WHEN '{PENDING}' THEN o.next_attempt_at ELSE o.claimed_until END)"
_HAS_LISTENER = "EXISTS (SELECT 1 FROM registrations r WHERE r.account = o.account AND r.service = o.service)"

_REGISTRATION_COLUMNS = "account, service, url, username, password"
_OUTBOX_ENTRY_COLUMNS = "id, account, service, request_id, state, attempts, received_at, next_attempt_at, last_error"
_ATTEMPT_COLUMNS = "a.outbox_id, a.number, a.at, a.url, a.outcome, a.ok, a.duration_s"
# What an attempt the listener acknowledged is recorded as.
ACKNOWLEDGED = "acknowledged"
_LISTED_STATES = {PENDING: (PENDING, CLAIMED), DEAD: (DEAD,)}

_CALLBACK_USERNAME_KEY = "callback_username"
_CALLBACK_PASSWORD_KEY = "callback_password"
# Present once the store's secrets are sealed: this text, sealed with the
# newest key. Opening it at start tells a wrong key from the right one.
_SEALED_KEY = "secrets_sealed"
_SEALED_TEXT = "m2m-gateway secrets"


class StoreClosed(RuntimeError):
    """The store was used after ``close()``."""


class SqlStore(ABC):
    """The store; one per process, shared by its threads. Open it after any fork."""

    # Each step takes the schema from version n to n + 1. Append to it; never
    # edit a step that has shipped.
    MIGRATIONS = ()
    # How claim_due joins to each registration (r) its listener's due entries,
    # as o: ``{listener_due}`` is the FROM ... LIMIT of a SELECT of at most
    # the limit of them, oldest first (its table named due), that walks that
    # listener's alone in the index outbox_listener_due. Never the whole
    # outbox in received_at order: that walked the entries of listeners not
    # registered too.
    CLAIM_JOIN = ""
    # Ends the SELECT of each listener's due entries: how the backend keeps
    # the rows it picks from other claimers until they are marked claimed.
    CLAIM_LOCK = ""
    # What follows the outbox in the FROM of claim_due's SELECT of one
    # listener's entries, and of next_due_at's: it tells a backend whose
    # planner needs telling to walk them by the index outbox_listener_due
    # (oldest first, stopping at the limit), or outbox_listener_next_due,
    # rather than sort them or walk every entry not delivered, as it may on a
    # fresh table (no statistics yet).
    LISTENER_INDEX = ""
    NEXT_DUE_INDEX = ""
    # The driver's errors that mean "not now" (server down, file locked, disk
    # full, no connection free) rather than a bug: callers get StoreUnavailable.
    UNAVAILABLE = ()
    # Names the store in errors, for the operator: the setting, never a password.
    location = "the store"

    def __init__(self, lazy=False, secret_keys=()):
        """Reach the database and migrate it now, or (``lazy``) on first use.

        Lazy is for gateway workers: the server opened the store before it
        started them, and a worker started during an outage must come up and
        answer 503 rather than fail to boot. ``secret_keys``: ``[store]
        secret_key``, the keys that seal the store's secrets (see ``sealing``).
        """
        self._secret_keys = tuple(secret_keys)
        self._box = None  # SecretBox or Plaintext, once prepared
        self._resealed = False  # whether preparing sealed secrets anew: their old form may linger on disk
        self._prepared = False
        self._preparing = threading.Lock()
        # Every outbox_writer()'s rows, written together: see there.
        self._outbox_writes = GroupCommit(self._write_gathered)
        if not lazy:
            self._ensure_prepared()

    def close(self):
        """Close every connection of this store, for shutdown once its threads are done with it
        (the group commit's own once the rows submitted to it are written)."""
        self._outbox_writes.close()
        self._close_connections()

    @abstractmethod
    def _close_connections(self):
        """Close every connection of this store."""

    def health(self):
        """Raise StoreUnavailable, saying why, unless the store answers now. Writes nothing."""
        self._read("SELECT 1")

    # -- gateway callback credentials -----------------------------------------

    def callback_credentials(self):
        """The (username, password) ThingSpace must send with its callbacks, made on first use."""
        generated = {
            _CALLBACK_USERNAME_KEY: secrets.token_urlsafe(12),
            _CALLBACK_PASSWORD_KEY: secrets.token_urlsafe(32),
        }
        with self._write() as db:
            # Another process may have made them first: then theirs win, for everyone.
            db.executemany(
                "INSERT INTO settings (key, value) VALUES (:key, :value) ON CONFLICT (key) DO NOTHING",
                [{"key": key, "value": self._box.seal(value)} for key, value in generated.items()],
            )
            stored = dict(
                db.execute(
                    "SELECT key, value FROM settings WHERE key IN (:username, :password)",
                    {"username": _CALLBACK_USERNAME_KEY, "password": _CALLBACK_PASSWORD_KEY},
                ).fetchall()
            )
        return self._box.open(stored[_CALLBACK_USERNAME_KEY]), self._box.open(stored[_CALLBACK_PASSWORD_KEY])

    # -- legacy listeners' registrations --------------------------------------

    def put_registration(self, account, service, url, username, password):
        with self._write() as db:
            db.execute(
                f"""INSERT INTO registrations ({_REGISTRATION_COLUMNS})
                VALUES (:account, :service, :url, :username, :password)
                ON CONFLICT (account, service) DO UPDATE
                SET url = excluded.url, username = excluded.username, password = excluded.password""",
                {
                    "account": account,
                    "service": service,
                    "url": url,
                    "username": username,
                    "password": self._box.seal(password),
                },
            )

    def delete_registration(self, account, service):
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM registrations WHERE account = :account AND service = :service",
                {"account": account, "service": service},
            )
            return cursor.rowcount == 1

    def registration(self, account, service):
        rows = self._read(
            f"SELECT {_REGISTRATION_COLUMNS} FROM registrations WHERE account = :account AND service = :service",
            {"account": account, "service": service},
        )
        return self._registration(rows[0]) if rows else None

    def registrations(self, account=None):
        """Every registration, or ``account``'s."""
        account_filter = "WHERE account = :account" if account is not None else ""
        rows = self._read(
            f"SELECT {_REGISTRATION_COLUMNS} FROM registrations {account_filter} ORDER BY account, service",
            {"account": account},
        )
        return [self._registration(row) for row in rows]

    # -- what each ThingSpace request asked for ------------------------------

    def remember_request(self, request_id, kind_spellings, now, account=None, devices=None):
        """Remember a GoToState forwarded at ``now``: its kind spellings, and for
        ``trace`` its account filter and number of devices (None: not said).

        Flushed to disk before it returns only when there are spellings to
        keep (the callbacks' envelopes need them). Most requests have none:
        for those, written for ``trace`` alone on every GoToState, the gateway
        does not wait for the disk (see ``_write``).
        """
        self.remember_requests([ForwardedRequest(request_id, now, account, devices, kind_spellings)])

    def remember_requests(self, requests):
        """``remember_request`` for several ``ForwardedRequest`` in one transaction, flushed if any has spellings."""
        with self._write(flushed=any(request.kind_spellings for request in requests)) as db:
            db.executemany(
                """INSERT INTO requests (request_id, kind_spellings, remembered_at, account, devices)
                VALUES (:request_id, :kind_spellings, :now, :account, :devices)
                ON CONFLICT (request_id) DO UPDATE
                SET kind_spellings = excluded.kind_spellings, remembered_at = excluded.remembered_at,
                account = excluded.account, devices = excluded.devices""",
                [
                    {
                        "request_id": request.request_id,
                        "kind_spellings": json.dumps(request.kind_spellings),
                        "now": request.forwarded_at,
                        "account": request.account,
                        "devices": request.devices,
                    }
                    for request in requests
                ],
            )

    def forwarded_request(self, request_id):
        """What was remembered of ``request_id`` when it was forwarded, or None."""
        rows = self._read(
            """SELECT request_id, remembered_at, account, devices, kind_spellings
            FROM requests WHERE request_id = :request_id""",
            {"request_id": request_id},
        )
        if not rows:
            return None
        (request_id, forwarded_at, account, devices, kind_spellings), = rows
        return ForwardedRequest(request_id, forwarded_at, account, devices, json.loads(kind_spellings))

    def forget_requests_before(self, cutoff):
        with self._write() as db:
            return db.execute("DELETE FROM requests WHERE remembered_at < :cutoff", {"cutoff": cutoff}).rowcount

    # -- the outbox ------------------------------------------------------------

    def add_callback(self, dedupe_key, account, service, request_id, body, now):
        """Store a callback for delivery; False if this dedupe_key was stored before.

        Committed, durably, when this returns: only then may ThingSpace be told 2xx.
        """
        return self.add_callbacks([ReceivedCallback(dedupe_key, account, service, request_id, body, now)])[0]

    def add_callbacks(self, callbacks):
        """``add_callback`` for several ``ReceivedCallback`` in one transaction: a result for each, in order.

        A dedupe key twice in ``callbacks`` is stored once, the second is a duplicate.
        A callback with ``claimed_by`` is stored claimed by that worker, and its
        result is its ``Delivery``, when its listener is registered and has no
        entry due for over HAND_OFF_OVERTAKES_S; otherwise it is stored as any
        other (True).
        """
        with self._write() as db:
            return self._add_callbacks(db, callbacks)

    def _add_callbacks(self, db, callbacks):
        # Keys inserted in their order: two transactions inserting the same keys
        # (a re-sent callback in two processes) wait for each other, never deadlock.
        order = sorted(range(len(callbacks)), key=lambda n: callbacks[n].dedupe_key)
        stored = [False] * len(callbacks)
        for n in order:
            received = callbacks[n]
            values = {
                "dedupe_key": received.dedupe_key,
                "account": received.account,
                "service": received.service,
                "request_id": received.request_id,
                "body": received.body,
                "now": received.received_at,
            }
            if received.claimed_by is not None:
                handed = self._add_claimed(db, received, values)
                if handed is not None:
                    stored[n] = handed
                    continue
            stored[n] = (
                db.execute(
                    f"""INSERT INTO outbox
                    (dedupe_key, account, service, request_id, body, state, attempts, received_at, next_attempt_at)
                    VALUES (:dedupe_key, :account, :service, :request_id, :body, '{PENDING}', 0, :now, :now)
                    ON CONFLICT (dedupe_key) DO NOTHING""",
                    values,
                ).rowcount
                == 1
            )
        return stored

    def _add_claimed(self, db, received, values):
        """Insert ``received`` claimed by its ``claimed_by`` and return its Delivery (False: a
        duplicate); None, inserting nothing, when its listener is not registered or has
        an entry due for over HAND_OFF_OVERTAKES_S, which goes first.
        """
        listener = db.execute(
            f"""SELECT r.url, r.username, r.password,
                (SELECT q.kind_spellings FROM requests q WHERE q.request_id = :request_id)
            FROM registrations r WHERE r.account = :account AND r.service = :service
            AND NOT EXISTS (SELECT 1 FROM outbox due {self.LISTENER_INDEX}
                WHERE due.account = :account AND due.service = :service AND {_DUE})""",
            {**values, "now": received.received_at - HAND_OFF_OVERTAKES_S},  # due by then
        ).fetchall()
        if not listener:
            return None
        [(url, username, password, kind_spellings)] = listener
        inserted = db.execute(
            f"""INSERT INTO outbox (dedupe_key, account, service, request_id, body, state, attempts,
                received_at, next_attempt_at, claimed_by, claimed_until)
            VALUES (:dedupe_key, :account, :service, :request_id, :body, '{CLAIMED}', 0, :now, :now, :worker, :until)
            ON CONFLICT (dedupe_key) DO NOTHING RETURNING id""",
            {**values, "worker": received.claimed_by, "until": received.claimed_until},
        ).fetchall()
        if not inserted:
            return False
        [(id,)] = inserted
        return Delivery(
            id, received.account, received.service, received.request_id, received.body, 0,
            url, username, self._box.open(password), received.received_at, kind_spellings,
        )

    def claim_due(self, worker, now, lease_s, limit):
        """Claim for ``worker`` up to ``limit`` due entries that have a listener, oldest first.

        Each registration's listener's oldest ``limit`` due entries, then the
        oldest ``limit`` of those: the entries of a listener not registered
        (or no longer) are never walked, however many wait.
        The SELECT and the UPDATE run in one transaction, under the backend's
        CLAIM_LOCK, so that no entry is claimed by two workers. (Not UPDATE
        ... RETURNING: it cannot return the registration's columns nor keep an order.)
        Each comes with the kind spellings remembered of its request, as
        stored (JSON text, None when not remembered): one query, not one more
        per delivery, and text that does not parse fails its entry alone.
        Not waiting for the disk: a claim lost with a power cut only lets the
        entry be claimed and sent again, as a lapsed lease does.
        """
        with self._write(flushed=False) as db:
            listener_due = f"""FROM outbox due {self.LISTENER_INDEX}
                WHERE due.account = r.account AND due.service = r.service AND {_DUE}
                ORDER BY due.received_at, due.id LIMIT :limit {self.CLAIM_LOCK}"""
            rows = db.execute(
                f"""SELECT o.id, o.account, o.service, o.request_id, o.body, o.attempts,
                    r.url, r.username, r.password, o.received_at, q.kind_spellings
                FROM registrations r {self.CLAIM_JOIN.format(listener_due=listener_due)}
                LEFT JOIN requests q ON q.request_id = o.request_id
                ORDER BY o.received_at, o.id
                LIMIT :limit""",
                {"now": now, "limit": limit},
            ).fetchall()
            db.executemany(
                f"UPDATE outbox SET state = '{CLAIMED}', claimed_by = :worker, claimed_until = :until WHERE id = :id",
                [{"worker": worker, "until": now + lease_s, "id": row[0]} for row in rows],
            )
        return [Delivery(*row[:8], self._box.open(row[8]), *row[9:]) for row in rows]

    def renew_claims(self, worker, ids, until):
        """Extend to ``until`` the leases ``worker`` holds on the entries ``ids``; not waiting for the disk, as claim_due."""
        with self._write(flushed=False) as db:
            db.executemany(
                f"UPDATE outbox SET claimed_until = :until WHERE id = :id AND state = '{CLAIMED}' AND claimed_by = :worker",
                [{"worker": worker, "until": until, "id": id} for id in sorted(ids)],  # in id order: see settle
            )

    def release_claims(self, worker, ids, now):
        """Give back, pending and due at ``now``, the entries ``ids`` that ``worker`` still holds
        unsent (at a graceful stop): any worker claims them at once, not once the lease lapses.
        How many it gave back. An entry another worker took over, or already settled, is left as it is.

        Not waiting for the disk, as claim_due: a release lost with a power cut
        leaves the claim to lapse, as it would have without one.
        """
        with self._write(flushed=False) as db:
            return db.executemany(
                f"""UPDATE outbox SET state = '{PENDING}', next_attempt_at = :now, claimed_by = NULL, claimed_until = NULL
                WHERE id = :id AND state = '{CLAIMED}' AND claimed_by = :worker""",
                [{"worker": worker, "now": now, "id": id} for id in sorted(ids)],  # in id order: see settle
            ).rowcount

    def mark_delivered(self, id, worker, now, *, url=None, duration_s=None):
        """False if ``worker`` no longer holds the entry (its lease ran out and another took it).

        Adds the attempt to the entry's history (see ``settle``).
        """
        return self.settle([Settlement(id, worker, now, url=url, duration_s=duration_s)])[0]

    def mark_failed(self, id, worker, now, error, retry_at, *, url=None, duration_s=None):
        """Count a failed attempt: retry at ``retry_at``, or give up (dead) when it is None.

        False if ``worker`` no longer holds the entry. Adds the attempt to the
        entry's history (see ``settle``).
        """
        return self.settle([Settlement(id, worker, now, error, retry_at, url, duration_s)])[0]

    def settle(self, settlements):
        """Record the outcomes of attempts (``Settlement``) in one transaction; for each, False if
        its worker no longer held the entry, and then nothing of it is recorded.

        Each attempt goes into its entry's history. Its number is the entry's
        count of attempts after the update, plus one if the update did not
        count one (a delivery): the envelope's CallbackCount. Its ``at`` there
        is when it began. So the history has exactly the attempts that
        counted: that of a worker that lost its claim is not recorded, as
        another worker now owns the entry and its history.
        """
        with self._write() as db:
            return self._settle_all(db, settlements)

    def _settle_all(self, db, settlements):
        # Rows locked in the order of their ids, as renew_claims locks them: two
        # transactions of several rows each can never wait for each other.
        order = sorted(range(len(settlements)), key=lambda n: settlements[n].id)
        recorded = [False] * len(settlements)
        for n in order:
            recorded[n] = self._settle(db, settlements[n])
        return recorded

    def write_outbox(self, rows):
        """``add_callbacks`` and ``settle`` in one transaction: ``rows`` mixes ``ReceivedCallback``
        and ``Settlement``; the result of each, in order (stored; recorded).

        The new entries are inserted first, then the settled ones updated in
        id order: locks taken in one order by every transaction, as there.
        """
        return self._write_gathered(lambda: rows)

    def _write_gathered(self, gather):
        """``write_outbox`` of the rows ``gather()`` returns once the transaction holds the write lock."""
        with self._write() as db:
            rows = gather()
            received = [n for n, row in enumerate(rows) if isinstance(row, ReceivedCallback)]
            settled = [n for n, row in enumerate(rows) if isinstance(row, Settlement)]
            if len(received) + len(settled) != len(rows):
                raise TypeError("write_outbox takes ReceivedCallback and Settlement rows only")
            results = [None] * len(rows)
            for indexes, write in ((received, self._add_callbacks), (settled, self._settle_all)):
                for n, result in zip(indexes, write(db, [rows[n] for n in indexes]), strict=True):
                    results[n] = result
        return results

    def outbox_writer(self, wait_s, what):
        """``write(row) -> result`` for one caller: ``write_outbox`` of the row once
        committed, waiting up to ``wait_s`` (``what`` names the row in its error).

        Every caller's rows share this store's group commit: the receiver's
        callbacks and the delivery worker's outcomes queued meanwhile go in one
        transaction, with one wait for the disk, rather than one each.
        """
        return functools.partial(self._outbox_writes.write, wait_s=wait_s, what=what)

    def outbox_submitter(self, wait_s, what):
        """``submit(row, on_done)`` for a caller that cannot wait: ``write_outbox`` of the row
        in the same group commit, ``on_done(result, error)`` called once from another thread,
        with StoreUnavailable if not written within ``wait_s`` (checked by ``expire_outbox_submissions``).
        """
        return functools.partial(self._outbox_writes.submit, wait_s=wait_s, what=what)

    def expire_outbox_submissions(self):
        """Tell each submitted row not written within its ``wait_s`` so (StoreUnavailable): often,
        by whoever submits, since the thread that would tell it may be the one the store holds."""
        self._outbox_writes.expire()

    def outbox_batch_writer(self, wait_s, what, linger_s=0.0):
        """``write_all(rows) -> results``: ``outbox_writer``'s for several rows at once, in
        the same group commit; each row's result, or the error it failed with; the rows
        left up to ``linger_s`` for another writer's transaction (see ``GroupCommit.write_all``)."""
        return functools.partial(self._outbox_writes.write_all, wait_s=wait_s, what=what, linger_s=linger_s)

    def outbox(self, state):
        """The entries an operator asks for: ``pending`` (claimed ones included) or ``dead``."""
        rows = self._read(
            f"SELECT {_OUTBOX_ENTRY_COLUMNS} FROM outbox WHERE state IN ({_listed_states(state)}) ORDER BY received_at, id"
        )
        return [OutboxEntry(*row) for row in rows]

    def last_attempts(self, state):
        """outbox id -> its last ``Attempt``, for the entries ``outbox(state)`` lists that have one."""
        rows = self._read(
            f"""SELECT {_ATTEMPT_COLUMNS} FROM attempts a JOIN outbox o ON o.id = a.outbox_id
            WHERE o.state IN ({_listed_states(state)})
            AND a.id = (SELECT MAX(latest.id) FROM attempts latest WHERE latest.outbox_id = a.outbox_id)"""
        )
        return {row[0]: _attempt(row) for row in rows}

    def request_callbacks(self, request_id):
        """Every callback stored for ``request_id``, oldest first, each with its attempts in order."""
        rows = self._read(
            f"""SELECT o.id, o.account, o.service, o.state, o.received_at, o.next_attempt_at, o.last_error,
                {_HAS_LISTENER}, o.body
            FROM outbox o WHERE o.request_id = :request_id ORDER BY o.received_at, o.id""",
            {"request_id": request_id},
        )
        attempts = {}
        for row in self._read(
            f"""SELECT {_ATTEMPT_COLUMNS} FROM attempts a JOIN outbox o ON o.id = a.outbox_id
            WHERE o.request_id = :request_id ORDER BY a.id""",
            {"request_id": request_id},
        ):
            attempts.setdefault(row[0], []).append(_attempt(row))
        return [
            StoredCallback(*row[:7], bool(row[7]), row[8], tuple(attempts.get(row[0], ()))) for row in rows
        ]

    def counts(self):
        """Number of entries in each state, zeros included."""
        counts = dict.fromkeys((PENDING, CLAIMED, DELIVERED, DEAD), 0)
        counts.update(self._read("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
        return counts

    def oldest_pending_at(self):
        """When the oldest callback not yet delivered (pending or claimed) was received, or None."""
        ((oldest,),) = self._read(f"SELECT MIN(received_at) FROM outbox WHERE state IN ('{PENDING}', '{CLAIMED}')")
        return oldest

    def retry(self, id, now):
        """Give a dead entry a fresh round of attempts; False if it is not dead."""
        return self._revive(now, "AND id = :id", {"id": id}) == 1

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
                WHERE o.state = '{PENDING}' AND o.next_attempt_at < :cutoff AND NOT {_HAS_LISTENER}""",
                {"now": now, "cutoff": now - max_age_s, "error": f"no listener registered within {max_age_s:g} s"},
            ).rowcount

    def next_due_at(self):
        """When claim_due will next find something, or None if no entry with a listener is waiting.

        Includes the leases of claimed entries: if their worker dies, they
        come due when the lease runs out.
        """
        # Per registration, the first of its listener's entries in the index
        # outbox_listener_next_due (its expression as written there): a join,
        # or a MIN, may be planned as a walk of every entry not delivered.
        [(next_due,)] = self._read(
            f"""SELECT MIN(listener.next_due) FROM (
                SELECT (SELECT {_NEXT_DUE} FROM outbox o {self.NEXT_DUE_INDEX}
                    WHERE o.account = r.account AND o.service = r.service AND o.state IN ('{PENDING}', '{CLAIMED}')
                    ORDER BY {_NEXT_DUE} LIMIT 1
                ) AS next_due
                FROM registrations r
            ) listener"""
        )
        return next_due

    def purge_delivered_before(self, cutoff):
        """Forget delivered entries, and so their dedupe keys: keep them longer than ThingSpace retries.

        Their attempts go with them.
        """
        purged = f"state = '{DELIVERED}' AND delivered_at < :cutoff"
        with self._write() as db:
            db.execute(f"DELETE FROM attempts WHERE outbox_id IN (SELECT id FROM outbox WHERE {purged})", {"cutoff": cutoff})
            return db.execute(f"DELETE FROM outbox WHERE {purged}", {"cutoff": cutoff}).rowcount

    # -- what a backend provides ------------------------------------------------

    @abstractmethod
    def _transaction(self, flushed=True):
        """A context manager: a transaction, committed on exit (rolled back on an exception).

        It yields an object with DB-API ``execute`` and ``executemany`` that
        take this module's SQL, each returning a cursor. Read a cursor's
        results (rowcount included) before the transaction ends: the cursor
        may be closed with it.

        The commit is on disk when it returns, unless ``flushed`` is False:
        then a power loss (or a database server crash) may lose it, never
        half of it. Only for what the gateway can do without, written often
        enough for the wait to count: with SQLite, under 8 concurrent GoToStates,
        a flushed write each cost a third of the throughput and tripled p99.
        """

    @abstractmethod
    def _query(self, sql, parameters=None):
        """All the rows of one query, run on its own."""

    @abstractmethod
    def _prepare(self):
        """Make the database ready for this gateway (its schema migrated); raises StoreUnavailable."""

    @abstractmethod
    def _migration(self):
        """A context manager like ``_transaction`` that makes the processes opening a new store migrate it one at a time."""

    @abstractmethod
    def _schema_version(self, db):
        """The version the schema is at, 0 for an empty database; ``db`` is what ``_migration`` yields."""

    @abstractmethod
    def _set_schema_version(self, db, version):
        """Record that the schema is now at ``version``, in the migration's transaction."""

    # -- internals ---------------------------------------------------------------

    @contextmanager
    def _write(self, flushed=True):
        self._ensure_prepared()
        with self._unavailable_on_error(), self._transaction(flushed) as db:
            yield db

    def _read(self, sql, parameters=None):
        self._ensure_prepared()
        with self._unavailable_on_error():
            return self._query(sql, parameters)

    def _ensure_prepared(self):
        if self._prepared:
            return
        with self._preparing:
            if not self._prepared:
                self._prepare()
                self._prepared = True

    @contextmanager
    def _unavailable_on_error(self):
        try:
            yield
        except self.UNAVAILABLE as error:
            STORE_ERRORS.inc()
            problem = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise StoreUnavailable(f"{self.location} is unavailable: {problem}") from error

    def _migrate(self):
        """Bring the schema to this gateway's version."""
        latest = len(self.MIGRATIONS)
        with self._unavailable_on_error(), self._migration() as db:
            version = self._schema_version(db)
            if version > latest:
                raise RuntimeError(f"{self.location} has schema version {version}, newer than this gateway's {latest}")
            for step in self.MIGRATIONS[version:]:
                for statement in step:
                    db.execute(statement)
            if version < latest:
                self._set_schema_version(db, latest)
            self._box = self._unseal_secrets(db)

    def _registration(self, row):
        account, service, url, username, password = row
        return Registration(account, service, url, username, self._box.open(password))

    def _unseal_secrets(self, db):
        """How this store's secrets are kept, given ``[store] secret_key``; in the migration's transaction.

        A store written without a key has its secrets sealed when a key is
        first given; one sealed with an older key (listed after the newest)
        is sealed again with the newest. A key that opens nothing, or none
        for a sealed store, stops the start with one line.
        """
        rows = db.execute("SELECT value FROM settings WHERE key = :key", {"key": _SEALED_KEY}).fetchall()
        sealed = rows[0][0] if rows else None
        if not self._secret_keys:
            if sealed is not None:
                raise ConfigError("store", "secret_key", "is not set, and this store's secrets are sealed with one")
            return Plaintext()
        box = SecretBox(self._secret_keys)
        if sealed is None:
            self._resealed = True
            self._reseal_secrets(db, box.seal)
            db.execute(
                "INSERT INTO settings (key, value) VALUES (:key, :value)",
                {"key": _SEALED_KEY, "value": box.seal(_SEALED_TEXT)},
            )
            return box
        try:
            box.open(sealed)
        except InvalidToken:
            raise ConfigError(
                "store",
                "secret_key",
                "opens none of this store's secrets: they were sealed with another key "
                "(when rotating, list the old key after the new one)",
            ) from None
        if not box.sealed_with_newest(sealed):
            self._resealed = True
            self._reseal_secrets(db, box.reseal)
            db.execute("UPDATE settings SET value = :value WHERE key = :key", {"key": _SEALED_KEY, "value": box.reseal(sealed)})
        return box

    @staticmethod
    def _reseal_secrets(db, reseal):
        """Every secret of the store through ``reseal``: listener passwords, the generated callback credentials."""
        passwords = db.execute("SELECT account, service, password FROM registrations WHERE password IS NOT NULL").fetchall()
        db.executemany(
            "UPDATE registrations SET password = :password WHERE account = :account AND service = :service",
            [{"account": account, "service": service, "password": reseal(password)} for account, service, password in passwords],
        )
        credentials = db.execute(
            "SELECT key, value FROM settings WHERE key IN (:username, :password)",
            {"username": _CALLBACK_USERNAME_KEY, "password": _CALLBACK_PASSWORD_KEY},
        ).fetchall()
        db.executemany(
            "UPDATE settings SET value = :value WHERE key = :key",
            [{"key": key, "value": reseal(value)} for key, value in credentials],
        )

    def _settle(self, db, settlement):
        if settlement.error is None:
            assignments, values, outcome = f"state = '{DELIVERED}', delivered_at = :now", {}, ACKNOWLEDGED
        else:
            outcome = settlement.error[:LAST_ERROR_MAX_CHARS]
            assignments = """state = :state, attempts = attempts + 1, next_attempt_at = COALESCE(:retry_at, next_attempt_at),
            last_error = :error, last_error_at = :now"""
            values = {"state": DEAD if settlement.retry_at is None else PENDING, "retry_at": settlement.retry_at, "error": outcome}
        duration_s = settlement.duration_s
        return self._settle_entry(
            db,
            f"""UPDATE outbox SET {assignments}, claimed_by = NULL, claimed_until = NULL
            WHERE id = :id AND state = '{CLAIMED}' AND claimed_by = :worker""",
            {
                **values,
                "now": settlement.at,
                "id": settlement.id,
                "worker": settlement.worker,
                "at": settlement.at - (duration_s or 0.0),
                "url": _without_credentials(settlement.url),
                "outcome": outcome,
                "ok": settlement.error is None,
                "duration_s": duration_s,
            },
        )

    # The attempt a settlement adds to its entry's history, from the entry as
    # the settlement left it (see ``settle``).
    _ATTEMPT_OF_SETTLED = f"""INSERT INTO attempts (outbox_id, number, at, url, outcome, ok, duration_s)
        SELECT id, attempts + CASE state WHEN '{DELIVERED}' THEN 1 ELSE 0 END, :at, :url, :outcome, :ok, :duration_s
        FROM {{settled}} WHERE id = :id"""

    def _settle_entry(self, db, update, values):
        """Run ``update`` (the entry's conditional UPDATE) and, if it changed the entry, add its attempt; whether it did.

        Two statements; a backend that can feed an UPDATE's rows to an
        INSERT does it in one round trip.
        """
        if db.execute(update, values).rowcount != 1:
            return False
        db.execute(self._ATTEMPT_OF_SETTLED.format(settled="outbox"), values)
        return True

    def _revive(self, now, condition="", values=None):
        with self._write() as db:
            return db.execute(
                f"""UPDATE outbox SET state = '{PENDING}', attempts = 0, next_attempt_at = :now
                WHERE state = '{DEAD}' {condition}""",
                {**(values or {}), "now": now},
            ).rowcount


def _listed_states(state):
    """The SQL list of the outbox states an operator's ``state`` (pending, dead) stands for."""
    if state not in _LISTED_STATES:
        raise ValueError(f"state must be one of {', '.join(_LISTED_STATES)}, got {state!r}")
    # The states are this module's constants, never the caller's text.
    return ", ".join(f"'{listed}'" for listed in _LISTED_STATES[state])


def _attempt(row):
    outbox_id, number, at, url, outcome, ok, duration_s = row
    return Attempt(outbox_id, number, at, url, outcome, bool(ok), duration_s)


def _without_credentials(url):
    """``url`` without user info, query string or fragment: the history is shown to operators."""
    if url is None:
        return None
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
