"""The docs name what the code has: every metric is in the operations runbook."""

from __future__ import annotations

from pathlib import Path

from service import metrics

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_runbook_documents_every_metric() -> None:
    runbook = (DOCS / "operations.md").read_text()
    names = {family.name for family in metrics.REGISTRY.collect()}
    assert names, "the metrics registry is empty"
    missing = sorted(name for name in names if f"`{name}" not in runbook)
    assert not missing, f"docs/operations.md does not describe {missing}"
