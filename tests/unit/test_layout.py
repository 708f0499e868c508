"""The code's shape, kept: small modules and functions, each module saying why it exists.

The layers between packages are import-linter contracts (``pyproject.toml``, run by CI).
"""

from __future__ import annotations

import ast
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    found = sorted(SERVICE.rglob("*.py"))
    assert len(found) > 50, "the service's modules were not found"
    return found


def test_no_module_is_long() -> None:
    long = {
        str(path.relative_to(SERVICE)): lines
        for path in modules()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"split these (over {MAX_MODULE_LINES} lines)"


def test_no_function_is_long() -> None:
    long = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(SERVICE)}:{node.lineno} {node.name}"] = lines
    assert long == {}, f"split these (over {MAX_FUNCTION_LINES} lines)"


def test_every_module_says_why_it_exists() -> None:
    silent = [
        str(path.relative_to(SERVICE))
        for path in modules()
        if path.name != "__main__.py" and not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert silent == []


def test_no_wait_for_that_can_lose_a_cancellation() -> None:
    # On Python 3.11, asyncio.wait_for returns the result instead of raising when a cancel
    # arrives as its inner future completes (bpo-42130): a loop would not stop. Use
    # asyncio.timeout.
    users = [str(p.relative_to(SERVICE)) for p in modules() if "asyncio.wait_for(" in p.read_text()]
    assert users == []
