"""asyncpg's errors, translated at the edge into Tributary's hierarchy.

- the server away (connection refused or dropped, starting, shutting down, too many clients,
  a statement timed out, a connection it dropped left in a broken state):
  :class:`InfrastructureError`, retried;
- a deadlock or a serialization failure: :class:`ConcurrencyError`, retried;
- data PostgreSQL will never take (a NUL in text, a number out of range, a row too large):
  :class:`RefusedByDatabase`, the one reason an event is dead-lettered.

Anything else (a syntax error, an undefined column, a violated constraint) is a bug and
leaves as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from service.errors import ConcurrencyError, InfrastructureError, RefusedByDatabase

UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.QueryCanceledError,
    # A pooled connection the server dropped mid-operation, found in a protocol state it
    # cannot leave ("another operation is in progress"); the pool replaces it.
    asyncpg.InternalClientError,
)
REFUSED = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)


@contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
        raise ConcurrencyError(f"PostgreSQL aborted the transaction: {exc}") from exc
    except REFUSED as exc:
        raise RefusedByDatabase(f"PostgreSQL refuses the data: {exc!r}") from exc
    except UNAVAILABLE as exc:
        raise InfrastructureError(f"PostgreSQL is unavailable: {exc!r}") from exc


def redact(url: str) -> str:
    """Hide the password of a connection URL for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
