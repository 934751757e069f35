"""Durable state of the gateway: callback credentials, listeners, request memory, the callback outbox
and the history of its delivery attempts.

Two backends behave the same: SQLite, one file for the processes of one host,
and PostgreSQL, one database for gateway instances on several hosts.
"""

from gateway.store.postgres import PostgresStore
from gateway.store.records import Attempt, Delivery, ForwardedRequest, OutboxEntry, Registration, StoredCallback
from gateway.store.sql import StoreClosed
from gateway.store.sqlite import SqliteStore

__all__ = [
    "Attempt",
    "Delivery",
    "ForwardedRequest",
    "OutboxEntry",
    "PostgresStore",
    "Registration",
    "SqliteStore",
    "StoreClosed",
    "StoredCallback",
    "open_store",
]


def open_store(settings, lazy=False):
    """The store a ``config.Store`` names: PostgreSQL at ``url`` if set, else the SQLite file at ``path``.

    Reached and migrated now, or (``lazy``) on first use.
    """
    if settings.url:
        return PostgresStore(settings.url, lazy=lazy, secret_keys=settings.secret_key)
    return SqliteStore(settings.path, lazy=lazy, secret_keys=settings.secret_key)
