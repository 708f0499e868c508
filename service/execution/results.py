"""What a task reports of its work: a JSON object of small values (row counts, an error rate,
bytes written, a checksum) that it writes to the file named in ``TRIBUTARY_RESULT_FILE`` — a
Python task returns it, the runner writes it. Read once the command has succeeded; a result
that is not an object of named values, or is larger than 64 KiB, fails the attempt with a
reason that says what is wrong (the task's bug: not retried)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

RESULT_FILE_VARIABLE = "TRIBUTARY_RESULT_FILE"
MAX_RESULT_BYTES = 64 * 1024
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")  # how templates and expect: name a value


class ResultError(ValueError):
    """The result file cannot be taken; the message says why."""


def result_path(log_path: Path) -> Path:
    """Where an attempt writes its result: beside its log (``<attempt>.result.json``)."""
    return log_path.with_name(log_path.stem + ".result.json")


def read_result(path: Path) -> dict[str, Any] | None:
    """The result the attempt wrote, None when it wrote none."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size > MAX_RESULT_BYTES:
        raise ResultError(
            f"result_too_large: {RESULT_FILE_VARIABLE} holds {size:,} bytes, at most "
            f"{MAX_RESULT_BYTES:,} are kept (report counts and checksums, not data)"
        )
    try:
        found = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ResultError(f"result_malformed: {RESULT_FILE_VARIABLE} is not JSON: {exc}") from None
    return checked_result(found)


def checked_result(found: Any) -> dict[str, Any]:
    """A result as it may be kept: a JSON object whose keys are names."""
    if not isinstance(found, dict):
        raise ResultError(
            f"result_malformed: a result is a JSON object (name: value), got {type(found).__name__}"
        )
    bad = [key for key in found if not NAME.match(key)]
    if bad:
        raise ResultError(
            f"result_malformed: result names are identifiers (letters, digits, _), got {bad[:3]}"
        )
    return found
