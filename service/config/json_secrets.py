"""Settings that are secret JSON objects (API tokens, the databases checks may query): checked
once, with a message that says what shape is wanted and never shows the secret."""

from __future__ import annotations

import orjson
from pydantic import SecretStr

TOKENS_SHAPE = 'a JSON object: {name: {"token": "at least 16 characters", "role": "viewer"}}'
DATABASES_SHAPE = "a JSON object: {name: postgresql URL}"


def checked_api_tokens(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    try:
        found = orjson.loads(value.get_secret_value())
    except orjson.JSONDecodeError:
        raise ValueError(f"must be {TOKENS_SHAPE}") from None
    if not isinstance(found, dict) or not found:
        raise ValueError(f"must be {TOKENS_SHAPE}")
    for name, entry in found.items():
        if not isinstance(entry, dict) or set(entry) != {"token", "role"}:
            raise ValueError(f"token {name!r}: must be {{token, role}}")
        if entry["role"] not in ("viewer", "operator"):
            raise ValueError(f"token {name!r}: role must be viewer or operator")
        if not isinstance(entry["token"], str) or len(entry["token"]) < 16:
            raise ValueError(f"token {name!r}: the token must be 16 characters or more")
    return value


def checked_check_databases(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    try:
        found = orjson.loads(value.get_secret_value())
    except orjson.JSONDecodeError:
        raise ValueError(f"must be {DATABASES_SHAPE}") from None
    if not isinstance(found, dict) or not all(
        isinstance(dsn, str) and dsn.startswith(("postgres://", "postgresql://"))
        for dsn in found.values()
    ):
        raise ValueError(f"must be {DATABASES_SHAPE}")
    return value
