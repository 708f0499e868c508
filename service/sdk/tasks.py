"""``@task``: a Python function declared as a Tributary task — what it reads and writes, how
it is retried, what it needs, how long it may take, what its result must satisfy. The keys are
those of the pipeline language (docs/pipelines.md); ``tributary compile`` checks them."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])


class TaskFunction:
    """A function and its task keys; calling it calls the function (tests stay plain)."""

    def __init__(self, function: Callable[..., Any], keys: Mapping[str, Any]) -> None:
        functools.update_wrapper(self, function)
        self.function = function
        self.keys = dict(keys)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    @property
    def target(self) -> str:
        """How the task runner finds it: ``package.module:function``."""
        module, name = self.function.__module__, self.function.__qualname__
        if module == "__main__" or "." in name or "<" in name:
            raise ValueError(
                f"task {name!r} must be a module-level function of an importable module "
                f"(defined in {module!r}): the runner imports it as module:function"
            )
        return f"{module}:{name}"

    @property
    def default_id(self) -> str:
        return self.function.__name__


@overload
def task(function: F) -> TaskFunction: ...


@overload
def task(
    function: None = None,
    *,
    inputs: Sequence[str | Mapping[str, Any]] = (),
    outputs: Sequence[str | Mapping[str, Any]] = (),
    retry: Mapping[str, Any] | None = None,
    resources: Mapping[str, Any] | None = None,
    timeout: str | None = None,
    expect: Mapping[str, str] | None = None,
    **keys: Any,
) -> Callable[[Callable[..., Any]], TaskFunction]: ...


def task(
    function: Callable[..., Any] | None = None,
    *,
    inputs: Sequence[str | Mapping[str, Any]] = (),
    outputs: Sequence[str | Mapping[str, Any]] = (),
    retry: Mapping[str, Any] | None = None,
    resources: Mapping[str, Any] | None = None,
    timeout: str | None = None,
    expect: Mapping[str, str] | None = None,
    **keys: Any,
) -> TaskFunction | Callable[[Callable[..., Any]], TaskFunction]:
    """Declare a task: ``@task`` or ``@task(outputs=[...], retry={"max_attempts": 3})``.
    ``inputs``/``outputs`` are URIs (or mappings with uri, dataset, partition); any other
    key of a pipeline task (description, tags, queue, env, …) may be given too."""
    declared: dict[str, Any] = dict(keys)
    for name, value in (
        ("inputs", [_ref(r) for r in inputs]),
        ("outputs", [_ref(r) for r in outputs]),
        ("retry", retry),
        ("resources", resources),
        ("timeout", timeout),
        ("expect", expect),
    ):
        if value:
            declared[name] = value if not isinstance(value, Mapping) else dict(value)

    def wrap(fn: Callable[..., Any]) -> TaskFunction:
        if not declared.get("description") and fn.__doc__:
            declared["description"] = fn.__doc__.strip().splitlines()[0]
        return TaskFunction(fn, declared)

    return wrap(function) if function is not None else wrap


def _ref(ref: str | Mapping[str, Any]) -> dict[str, Any]:
    return {"uri": ref} if isinstance(ref, str) else dict(ref)
