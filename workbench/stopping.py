"""How every long-running command stops: SIGINT (Ctrl-C) and SIGTERM, handled alike.

The handlers are installed explicitly, so a command started with SIGINT ignored (a script's
background job inherits that) still stops on it, and SIGTERM stops as cleanly as Ctrl-C instead of
killing the process before it has flushed, committed or stopped what it started.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_signals(interrupt: bool = False) -> Iterator[threading.Event]:
    """Within the block, SIGINT and SIGTERM set the event it yields; then the previous handlers
    come back.

    With ``interrupt`` they raise ``KeyboardInterrupt`` instead, as Ctrl-C does by default: for
    commands that run one long computation and clean up as it unwinds (benchmarks, evaluations).
    """
    stop = threading.Event()

    def request_stop(_signum: int, _frame: object) -> None:
        stop.set()

    handler = signal.default_int_handler if interrupt else request_stop
    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)  # None: set outside Python
