"""Kafka client errors summarised, not streamed: a broker that is down makes kafka-python and
librdkafka log every reconnection attempt (several lines a second), which buries a command's own
status lines. The first error after a quiet spell is shown as it is; the rest become one line per
window counting them, with the latest one.
"""

from __future__ import annotations

import logging
import time
from typing import TextIO

CLIENT_LOGGERS = ("kafka", "workbench.streams.clients")
"""kafka-python's loggers, and ours, which also carries librdkafka's log."""
WINDOW_S = 5.0


class ClientErrorSummary(logging.StreamHandler):
    """Writes the first record of a burst, then at most one summary line per ``window_s``."""

    def __init__(self, stream: TextIO | None = None, window_s: float = WINDOW_S) -> None:
        super().__init__(stream)
        self.window_s = window_s
        self._shown_at = -window_s  # monotonic time of the last line written
        self._held = 0
        self._latest: logging.LogRecord | None = None

    def emit(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        if not self._held and now - self._shown_at >= self.window_s:
            super().emit(record)  # after a quiet spell: the error itself
            self._shown_at = now
            return
        self._held += 1
        self._latest = record
        if now - self._shown_at >= self.window_s:
            self._summarise(now)

    def _summarise(self, now: float) -> None:
        if not self._held or self._latest is None:
            return
        latest = self._latest.getMessage()
        errors = "error" if self._held == 1 else "errors"
        summary = logging.makeLogRecord(
            {
                "name": self._latest.name,
                "levelno": self._latest.levelno,
                "levelname": self._latest.levelname,
                "msg": f"{self._held:,} more Kafka client {errors} in the last "
                f"{now - self._shown_at:,.1f} s (latest: {latest})",
            }
        )
        super().emit(summary)
        self._shown_at = now
        self._held = 0

    def close(self) -> None:
        """Count what is still held back before going."""
        self.acquire()
        try:
            self._summarise(time.monotonic())
        finally:
            self.release()
        super().close()


def summarise_client_logs(level: int = logging.ERROR) -> ClientErrorSummary:
    """Route the Kafka clients' records of ``level`` and above through one summary (stderr)."""
    handler = ClientErrorSummary()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(handler)
        logger.propagate = False
    return handler
