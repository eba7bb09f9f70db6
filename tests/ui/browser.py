"""Playwright against Debian's Chromium, for the browser tests (never `playwright install`).

Chromium comes from the system (`apt-get install chromium`) or `CHROMIUM_PATH`. Without it the
browser tests skip with a reason saying so, unless `REQUIRE_BROWSER_TESTS=1` (CI), where a missing
browser is a failure rather than a silent skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_path() -> str:
    return os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium"


def require_chromium() -> str:
    path = chromium_path()
    if Path(path).exists():
        return path
    reason = (
        f"browser tests skipped: no Chromium at {path} "
        "(install it with `apt-get install -y chromium` or set CHROMIUM_PATH)"
    )
    if os.environ.get("REQUIRE_BROWSER_TESTS") == "1":
        pytest.fail(reason.replace("skipped", "cannot run"), pytrace=False)
    pytest.skip(reason)


def launch_browser() -> Iterator[object]:
    """A headless Chromium for one test module.

    Playwright's sync API runs an event loop in this thread, and Django refuses ORM calls from a
    thread with a running loop. The tests' own ORM calls are plain synchronous code, so the check is
    lifted (DJANGO_ALLOW_ASYNC_UNSAFE) exactly while the browser runs and restored afterwards.
    """
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
            try:
                yield browser
            finally:
                browser.close()
