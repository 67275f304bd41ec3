"""A broker for the length of a command: the local one unless a cluster is configured."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from workbench.broker.process import LocalBroker
from workbench.config import Settings
from workbench.console import Progress, say


@contextlib.contextmanager
def local_broker_for(settings: Settings, progress: Progress = say) -> Iterator[None]:
    """Make sure a broker is reachable; stop it afterwards only if this call started it."""
    if not settings.uses_local_broker:
        progress(f"using the Kafka cluster at {settings.bootstrap}")
        yield
        return
    broker = LocalBroker(settings, progress=progress)
    started_here = not broker.is_running()
    broker.start()
    try:
        yield
    finally:
        if started_here:
            broker.stop()
