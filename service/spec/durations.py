"""Durations as people write them in pipeline files: ``30s``, ``5m``, ``1h30m``, ``2d``, ``1w``."""

from __future__ import annotations

import functools
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE = re.compile(r"^-?(?:\d+(?:\.\d+)?[smhdw])+$")


def parse_duration(value: Any) -> timedelta:
    """``"1h30m"`` -> 90 minutes; a bare number is seconds; a leading ``-`` negates."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as '30s', '1h30m'")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError("a duration is a number of seconds or a string such as '30s', '1h30m'")
    return _parse_text(value)


@functools.lru_cache(maxsize=4096)
def _parse_text(value: str) -> timedelta:
    text = value.strip().replace(" ", "")
    if not _WHOLE.match(text):
        raise ValueError(
            f"{value!r} is not a duration: use numbers with units s, m, h, d, w "
            "(e.g. '90s', '1h30m')"
        )
    sign = -1 if text.startswith("-") else 1
    seconds = sum(float(amount) * UNIT_SECONDS[unit] for amount, unit in _PART.findall(text))
    return timedelta(seconds=sign * seconds)


@functools.lru_cache(maxsize=4096)
def format_duration(value: timedelta) -> str:
    """The shortest exact spelling: ``timedelta(minutes=90)`` -> ``"1h30m"``."""
    seconds = value.total_seconds()
    if seconds == 0:
        return "0s"
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        size = UNIT_SECONDS[unit]
        if seconds >= size:
            count = int(seconds // size) if unit != "s" else seconds
            parts.append(f"{count:g}{unit}")
            seconds -= int(count) * size if unit != "s" else seconds
    return sign + "".join(parts)


# A timedelta in models, written and hashed in the same spelling as in files.
Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
