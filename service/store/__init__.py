"""PostgreSQL: the durable state. ``store.py`` is the only module that runs queries."""

from service.store.store import (
    AttemptResult,
    Capacity,
    IgnoredEvent,
    OutboxReader,
    OutboxRow,
    Store,
    TaskMove,
    Transaction,
    connect,
    create_database_if_missing,
)

__all__ = [
    "AttemptResult",
    "Capacity",
    "IgnoredEvent",
    "OutboxReader",
    "OutboxRow",
    "Store",
    "TaskMove",
    "Transaction",
    "connect",
    "create_database_if_missing",
]
