"""Placeholders in task commands: ``{batch_date}``, ``{run_id}``, ``{attempt}`` … (no eval)."""

from __future__ import annotations

import re
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
NAMES = frozenset({"batch_date", "run_id", "attempt", "task_id", "pipeline_id"})


def unknown_placeholders(text: str) -> list[str]:
    """Placeholders in ``text`` that no run can fill."""
    return [name for name in PLACEHOLDER.findall(text) if name.strip() not in NAMES]


def render(text: str, values: Mapping[str, str]) -> str:
    """Fill every placeholder; ``{{`` and ``}}`` are not special, unknown names are kept."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1).strip(), m.group(0)), text)
