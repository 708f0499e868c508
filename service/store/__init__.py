"""PostgreSQL: the durable state. ``store.py`` is the only module that runs queries."""

from service.store.store import (
    OutboxReader,
    OutboxRow,
    Store,
    Transaction,
    connect,
    create_database_if_missing,
)

__all__ = [
    "OutboxReader",
    "OutboxRow",
    "Store",
    "Transaction",
    "connect",
    "create_database_if_missing",
]
