"""The browser rig: Debian's chromium driven by Playwright (its own browser download cannot
work here), and the directory screenshots go to (``TEST_SCREENSHOTS``, e.g.
``docs/screenshots`` to refresh the committed ones; otherwise the test's own)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

CHROMIUM = os.environ.get("TEST_CHROMIUM") or shutil.which("chromium")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM, (
        "the browser tests need Debian's chromium: apt-get install chromium "
        "(or TEST_CHROMIUM=/path/to/chrome)"
    )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    chosen = os.environ.get("TEST_SCREENSHOTS")
    directory = Path(chosen) if chosen else tmp_path / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory
