"""The one error the local broker raises, and how its messages quote a tool's output."""

from __future__ import annotations

import re


class BrokerError(RuntimeError):
    """The local broker could not be provisioned, started or stopped; the message says why."""


def tail(text: str, lines: int = 30) -> str:
    """The last ``lines`` lines of ``text``, without terminal colour codes (Maven emits some)."""
    return "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", text).strip().splitlines()[-lines:])
