"""What each asyncpg error means to the loops: wait, refuse the data, or stop on a bug."""

from __future__ import annotations

import asyncpg
import pytest

from service.errors import ConcurrencyError, InfrastructureError, RefusedByDatabase
from service.store.errors import redact, translated

AWAY = InfrastructureError


@pytest.mark.parametrize(
    ("raised", "means"),
    [
        (ConnectionRefusedError(111, "refused"), AWAY),
        (asyncpg.CannotConnectNowError("the database system is shutting down"), AWAY),
        (asyncpg.InterfaceError("connection has been released back to the pool"), AWAY),
        (asyncpg.InternalClientError("cannot switch to state 12; another operation (2)"), AWAY),
        (asyncpg.DeadlockDetectedError("deadlock"), ConcurrencyError),
        (asyncpg.CharacterNotInRepertoireError("invalid byte sequence 0x00"), RefusedByDatabase),
    ],
)
def test_each_driver_error_is_translated(raised: Exception, means: type[Exception]) -> None:
    with pytest.raises(means), translated():
        raise raised


def test_a_bug_leaves_as_it_is() -> None:
    with pytest.raises(asyncpg.UndefinedColumnError), translated():
        raise asyncpg.UndefinedColumnError("column x does not exist")


def test_a_password_never_leaves_in_a_url() -> None:
    assert redact("postgresql://bob:hunter2@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert redact("postgresql://bob@db/x") == "postgresql://bob@db/x"
