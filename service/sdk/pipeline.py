"""Pipelines assembled in Python: ``Pipeline(...)`` and ``add_task(task, depends_on=...)``
compile to exactly the document a YAML file would be (``to_spec``), which the pipeline
language then validates like any other (``tributary validate``/``plan``/``compile``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from service.sdk.tasks import TaskFunction


class Pipeline:
    def __init__(self, id: str, **keys: Any) -> None:
        """``keys``: any top-level key of the language (triggers, params, sla, defaults,
        description, owner, domain, max_active_runs, version)."""
        self.id = id
        self.keys = dict(keys)
        self._tasks: list[dict[str, Any]] = []

    def add_task(
        self,
        task: TaskFunction | Callable[..., Any] | Mapping[str, Any],
        *,
        depends_on: Sequence[str | TaskFunction] = (),
        id: str | None = None,
        **keys: Any,
    ) -> str:
        """Add a task: an ``@task`` function, a plain module-level function, or a mapping of
        task keys (a command task). ``keys`` add to or override what the task declares
        (``when``, ``expect``, ``trigger_rule``, …). Returns the task's id."""
        if isinstance(task, Mapping):
            declared = dict(task)
        else:
            function = task if isinstance(task, TaskFunction) else TaskFunction(task, {})
            declared = {"id": function.default_id, "python": function.target, **function.keys}
        declared.update(keys)
        if id is not None:
            declared["id"] = id
        needs = [d.default_id if isinstance(d, TaskFunction) else d for d in depends_on]
        if needs:
            declared["requires"] = [*declared.get("requires", []), *needs]
        self._tasks.append(declared)
        return str(declared.get("id"))

    def to_spec(self) -> dict[str, Any]:
        """The pipeline as the language's document (the form the service loads)."""
        return {"id": self.id, **self.keys, "tasks": [dict(t) for t in self._tasks]}


def pipelines_in(where: str | Path) -> list[Pipeline]:
    """The pipelines a Python module defines at module level: ``where`` is its file (under the
    current directory, which the task runner also imports from) or its dotted name. Imported
    here, in the command's own process: the service itself never imports pipeline code."""
    name = module_name(where)
    root = str(Path.cwd())
    if root not in sys.path:
        sys.path.insert(0, root)
    module = importlib.import_module(name)
    return [value for value in vars(module).values() if isinstance(value, Pipeline)]


def module_name(where: str | Path) -> str:
    """``examples/sdk/orders.py`` -> ``examples.sdk.orders`` (relative to the current
    directory); a dotted name stays as it is."""
    text = str(where)
    if not text.endswith(".py"):
        return text
    path = Path(text).resolve()
    try:
        relative = path.relative_to(Path.cwd())
    except ValueError:
        raise ImportError(
            f"{where} is not under the current directory: run from the directory its tasks "
            "are imported from (the runner finds them as package.module:function)"
        ) from None
    return ".".join(relative.with_suffix("").parts)
