"""Settings that are URLs of the servers the service talks to: the scheme checked once, so a
wrong one is refused at start-up with what was expected."""

from __future__ import annotations


def postgres_url(value: str) -> str:
    if not value.startswith(("postgres://", "postgresql://")):
        raise ValueError("must be a postgresql:// URL")
    return value


def redis_url(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    return value
