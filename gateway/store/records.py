"""What the store hands out: plain immutable records, the same for every backend.

Passwords are kept out of ``repr`` so that a record that ends up in a log line
or a traceback does not leak a legacy listener's credentials.
"""

from dataclasses import dataclass, field

# The life of an outbox entry: pending -> claimed -> delivered, or back to
# pending after a failed attempt, or dead once retries are given up (or no
# listener registered in time). An operator's retry puts a dead one back to pending.
PENDING = "pending"
CLAIMED = "claimed"
DELIVERED = "delivered"
DEAD = "dead"


@dataclass(frozen=True)
class Registration:
    """Where a legacy listener wants the callbacks of one account and service."""

    account: str
    service: str
    url: str
    username: str | None
    password: str | None = field(repr=False)


@dataclass(frozen=True)
class Delivery:
    """A claimed outbox entry with everything needed to deliver it."""

    id: int
    account: str
    service: str
    request_id: str | None
    body: str
    attempts: int
    url: str
    username: str | None
    password: str | None = field(repr=False)
    received_at: float
    # What ``remember_request`` stored for the callback's request: JSON text, None when nothing is.
    kind_spellings: str | None = None


@dataclass(frozen=True)
class OutboxEntry:
    """An outbox entry as an operator lists it."""

    id: int
    account: str
    service: str
    request_id: str | None
    state: str
    attempts: int
    received_at: float
    next_attempt_at: float
    last_error: str | None


@dataclass(frozen=True)
class Attempt:
    """One POST of a callback to its listener, as the outbox entry's history keeps it.

    ``url`` is the listener's URL without user info or query string (None if
    no POST was made); ``at`` is when the POST began.
    """

    outbox_id: int
    number: int
    at: float
    url: str | None
    outcome: str
    ok: bool
    duration_s: float | None


@dataclass(frozen=True)
class ForwardedRequest:
    """A GoToState the gateway forwarded to ThingSpace, as remembered for its callbacks and for ``trace``.

    ``account`` is the request's account filter and ``devices`` its number of
    devices, each None when the request did not say (or was forwarded by a
    gateway that did not keep them).
    """

    request_id: str
    forwarded_at: float
    account: str | None
    devices: int | None
    kind_spellings: dict


@dataclass(frozen=True)
class StoredCallback:
    """A callback of one request with its delivery history, for ``trace``.

    ``body`` is ThingSpace's event as stored (its credentials removed);
    ``listener_registered`` whether its account and service have a listener now.
    """

    id: int
    account: str
    service: str
    state: str
    received_at: float
    next_attempt_at: float
    last_error: str | None
    listener_registered: bool
    body: str
    attempts: tuple[Attempt, ...]


@dataclass(frozen=True)
class ReceivedCallback:
    """A callback as the receiver stores it: ThingSpace's event (credentials removed) as JSON text.

    With ``claimed_by``, stored already claimed by that worker until
    ``claimed_until`` if its listener can take it now: the worker sends it
    without a claim of its own (see ``SqlStore.add_callbacks``).
    """

    dedupe_key: str
    account: str
    service: str
    request_id: str | None
    body: str
    received_at: float
    claimed_by: str | None = None
    claimed_until: float | None = None


@dataclass(frozen=True)
class Settlement:
    """The outcome of one attempt at a claimed entry, for the store to record.

    ``error`` is None when the listener acknowledged; otherwise the entry is
    retried at ``retry_at``, or dead when that is None. ``at`` is when the
    attempt ended; ``url`` and ``duration_s`` go into its history.
    """

    id: int
    worker: str
    at: float
    error: str | None = None
    retry_at: float | None = None
    url: str | None = None
    duration_s: float | None = None
