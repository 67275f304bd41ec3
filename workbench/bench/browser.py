"""Headless Debian Chromium driven by Playwright, started the one way this project allows."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

FOREGROUND_FLAGS = (
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
)
"""Every page behaves as the one in front: N pages of one browser then stand for N people each
looking at their own screen (Chromium otherwise throttles the timers of pages behind, to once a
minute, and a dashboard's heartbeat with them)."""


class BrowserUnavailable(RuntimeError):
    """Playwright or Chromium is missing."""


@contextlib.contextmanager
def chromium(
    viewport: tuple[int, int] = (1400, 1000), foreground: bool = False, **options: Any
) -> Iterator[Any]:
    """A persistent Playwright context on a fresh profile directory, removed afterwards;
    ``foreground``: no page is throttled as a page behind (``FOREGROUND_FLAGS``)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise BrowserUnavailable(
            "the Playwright package is missing: pip install -e '.[test]' (./wb test does it)"
        ) from exc
    if not CHROMIUM.exists():
        raise BrowserUnavailable(
            f"no {CHROMIUM}: install Debian's chromium and chromium-driver (./wb test does it)"
        )
    profile = tempfile.mkdtemp(prefix="workbench-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                args=[*FLAGS, *(FOREGROUND_FLAGS if foreground else ())],
                headless=True,
                viewport={"width": viewport[0], "height": viewport[1]},
                accept_downloads=True,
                **options,
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
