"""When each row of a recording goes out, and the time it carries (pure: no clock is read here).

Rows go out at the recording's own gaps divided by the speed (as fast as possible at an infinite
speed); with a shift every row's time moves by the same amount, so the first row is "now".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Pacing:
    """The schedule of one replay."""

    first: datetime
    """The recording's first time."""
    speed: float = 1.0
    """Recording seconds per wall-clock second; ``math.inf``: as fast as possible."""
    shift: timedelta = timedelta(0)
    """Added to every row's time."""

    @classmethod
    def of(cls, first: datetime, speed: float, shift_to_now: bool, now: datetime) -> Pacing:
        """The schedule for a recording starting at ``first``, replayed from ``now``."""
        if not speed > 0:
            raise ValueError(f"speed {speed}: it must be above 0")
        return cls(first, speed, now - first if shift_to_now else timedelta(0))

    def due_s(self, ts: datetime) -> float:
        """Seconds after the replay's start at which the row recorded at ``ts`` goes out."""
        if math.isinf(self.speed):
            return 0.0
        return max(0.0, (ts - self.first).total_seconds() / self.speed)

    def published(self, ts: datetime) -> datetime:
        """The time the row recorded at ``ts`` carries."""
        return ts + self.shift

    def too_far_ahead_from_s(self, limit: timedelta) -> float | None:
        """Recording seconds after the first row from which shifted times, published faster than
        real time, are more than ``limit`` ahead of the clock; None when they never are."""
        if not self.shift or self.speed <= 1.0:
            return None
        return limit.total_seconds() / (1.0 - 1.0 / self.speed)
