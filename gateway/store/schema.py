"""The store's tables, written once for both backends.

``STEPS[n]`` takes the schema from version n to n + 1. Append to it; never
edit a step that has shipped (SQLite keeps each CREATE statement's text as
written). A statement names the few types the backends spell differently
as ``{placeholders}``; each backend fills them in with ``migrations()``.
"""

STEPS = (
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
            remembered_at {epoch} NOT NULL
        )""",
        "CREATE INDEX requests_remembered_at ON requests (remembered_at)",
        # {callback_id} never hands out an id twice, even after a purge: an id
        # an operator or a stale worker holds can only ever name one callback.
        """CREATE TABLE outbox (
            id {callback_id},
            dedupe_key TEXT NOT NULL UNIQUE,
            account TEXT NOT NULL,
            service TEXT NOT NULL,
            request_id TEXT,
            body TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'claimed', 'delivered', 'dead')),
            attempts INTEGER NOT NULL,
            received_at {epoch} NOT NULL,
            next_attempt_at {epoch} NOT NULL,
            claimed_by TEXT,
            claimed_until {epoch},
            delivered_at {epoch},
            last_error TEXT,
            last_error_at {epoch}
        )""",
        "CREATE INDEX outbox_state_next_attempt_at ON outbox (state, next_attempt_at)",
    ),
    # 2: for `m2m-gateway trace`. Every delivery attempt, kept as long as its
    # outbox entry; and of each forwarded request its account filter and
    # number of devices (remembered_at is when it was forwarded).
    (
        # {attempt_id}: attempts are ordered by id within an entry, never named by it.
        """CREATE TABLE attempts (
            id {attempt_id},
            outbox_id BIGINT NOT NULL,
            number INTEGER NOT NULL,
            at {epoch} NOT NULL,
            url TEXT,
            outcome TEXT NOT NULL,
            ok {boolean} NOT NULL,
            duration_s {epoch}
        )""",
        "CREATE INDEX attempts_outbox_id ON attempts (outbox_id)",
        "CREATE INDEX outbox_request_id ON outbox (request_id)",
        "ALTER TABLE requests ADD COLUMN account TEXT",
        "ALTER TABLE requests ADD COLUMN devices INTEGER",
    ),
    # 3: claim_due walks the entries not yet delivered oldest first and stops
    # at its limit. Without this it sorted every due entry on every claim, so
    # a backlog made each claim dearer (3 ms of CPU at 5,000 entries) and
    # delivery slower just when it had to catch up. Partial: delivered and
    # dead entries, most of the table, are not in it.
    ("CREATE INDEX outbox_due ON outbox (received_at, id) WHERE state IN ('pending', 'claimed')",),
    # 4: claim_due and next_due_at start from the registrations and walk each
    # listener's own entries, oldest first. Walking outbox_due, they walked
    # every entry waiting for a listener that is not registered too: with
    # 4,000 of those, every claim for every listener walked 4,000 rows.
    # Partial as outbox_due was, which nothing uses any more. And each
    # listener's entries by when they come due (their next attempt, or the
    # end of their lease): next_due_at reads the first of each listener's,
    # not every one waiting for a retry.
    (
        "CREATE INDEX outbox_listener_due ON outbox (account, service, received_at, id) WHERE state IN ('pending', 'claimed')",
        """CREATE INDEX outbox_listener_next_due ON outbox
        (account, service, (CASE state WHEN 'pending' THEN next_attempt_at ELSE claimed_until END))
        WHERE state IN ('pending', 'claimed')""",
        "DROP INDEX outbox_due",
    ),
)


def migrations(*, epoch, callback_id, attempt_id, boolean):
    """``STEPS`` in one backend's types.

    epoch: seconds since the epoch, with fractions (and ``duration_s``).
    callback_id: the outbox's primary key, never reused.
    attempt_id: the attempts' primary key.
    boolean: a true/false column.
    """
    types = {"epoch": epoch, "callback_id": callback_id, "attempt_id": attempt_id, "boolean": boolean}
    return tuple(tuple(statement.format(**types) for statement in step) for step in STEPS)
