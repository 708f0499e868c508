"""PostgreSQL: the durable state. ``database.py`` (with ``reads.py``), ``transaction.py`` (with
``scheduling.py``) and ``outbox.py`` are the only modules that run queries, all of them named
in ``queries.sql``."""

from service.store.database import Store, connect, create_database_if_missing
from service.store.outbox import OutboxReader
from service.store.transaction import Transaction

__all__ = ["OutboxReader", "Store", "Transaction", "connect", "create_database_if_missing"]
