"""Durable state of the gateway: callback credentials, listeners, request memory, the callback outbox."""

from gateway.store.records import Delivery, OutboxEntry, Registration
from gateway.store.sqlite import SqliteStore

__all__ = ["Delivery", "OutboxEntry", "Registration", "SqliteStore"]
