"""Waiting for something a server does in its own time, without sleeping longer than needed."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(predicate: Callable[[], bool], timeout_s: float, every_s: float = 0.25) -> bool:
    """True as soon as ``predicate()`` is; False if it is still not after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return predicate()
