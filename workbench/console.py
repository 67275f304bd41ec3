"""Progress lines for people: one line on stderr, so stdout stays clean for a command's output."""

from __future__ import annotations

import sys
from collections.abc import Callable

Progress = Callable[[str], None]
"""Where long work reports what it is doing, one line at a time."""


def say(message: str) -> None:
    """Print ``message`` as one line on stderr, at once."""
    print(message, file=sys.stderr, flush=True)
