"""Failed sign-ins slowed down: a client that fails too often in a minute is refused for a while.

One instance per server (the live API, the dashboard). Successful sign-ins and cookie sessions are
never slowed; only attempts that present a token or password are counted and refused.
"""

from __future__ import annotations

import time
from collections import deque
from threading import Lock

FAILURES = 10
"""Failed attempts a client may make within ``WINDOW_S`` before it is refused."""
WINDOW_S = 60.0
LOCKOUT_S = 60.0
"""How long a client that hit the limit is refused (s)."""
CLIENTS_MAX = 10_000
"""Clients remembered at once (the oldest are forgotten first)."""


class SignInThrottle:
    """Counts failed sign-ins per client address; thread-safe."""

    def __init__(
        self, failures: int = FAILURES, window_s: float = WINDOW_S, lockout_s: float = LOCKOUT_S
    ) -> None:
        self.failures = failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self._failed: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = Lock()

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: it may now)."""
        with self._lock:
            return max(0.0, self._locked_until.get(client, 0.0) - time.monotonic())

    def failed(self, client: str) -> None:
        """Count a failed attempt; locks the client out once it reaches the limit."""
        now = time.monotonic()
        with self._lock:
            recent = self._failed.pop(client, None) or deque()
            recent.append(now)
            while recent and recent[0] < now - self.window_s:
                recent.popleft()
            self._failed[client] = recent  # re-inserted: the dict stays oldest-first
            if len(recent) >= self.failures:
                self._locked_until[client] = now + self.lockout_s
                recent.clear()
            while len(self._failed) > CLIENTS_MAX:
                self._failed.pop(next(iter(self._failed)))
            for stale in [c for c, t in self._locked_until.items() if t < now]:
                del self._locked_until[stale]

    def refusal(self, client: str) -> str | None:
        """Why ``client`` is refused right now, or None."""
        wait = self.retry_after(client)
        if not wait:
            return None
        return (
            f"too many failed sign-ins from {client}: try again in {wait:.0f} s "
            f"(at most {self.failures} failures a minute)"
        )
