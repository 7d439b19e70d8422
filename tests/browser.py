"""The distribution's Chromium, driven by Playwright for the browser tests (it never downloads a browser)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",  # Chromium's sandbox refuses to run as root, and needs user namespaces containers often lack
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium_context(profile: Path, **options: Any) -> Iterator[BrowserContext]:
    """Headless Chromium with a fresh profile in `profile` (Playwright's launch options in `options`); the test
    fails, saying how to install it, when the Debian package is missing."""
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: install the Debian package chromium (`apt install chromium`; "
            "make test installs it when run as root)"
        )
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS, **options
        )
        try:
            yield context
        finally:
            context.close()
