"""Named SQL queries from ``queries.sql``: a ``-- name: x`` header, comments, then the SQL."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

QUERIES_FILE = Path(__file__).with_name("queries.sql")
_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a file of named queries; the SQL keeps its own comments out."""
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        sql = "\n".join(line for line in body.splitlines() if not line.startswith("--")).strip()
        queries[name] = sql.rstrip(";")
    return queries


@cache
def queries() -> dict[str, str]:
    return parse_queries(QUERIES_FILE.read_text(encoding="utf-8"))


def q(name: str) -> str:
    """The SQL of the query called ``name``."""
    return queries()[name]
