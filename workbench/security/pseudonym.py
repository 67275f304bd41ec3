"""Device-id pseudonymisation: a keyed HMAC replaces each device id in everything the API emits.

The same id always maps to the same pseudonym under one key (so filters, history and charts still
work), and without the key the real id cannot be recovered or confirmed by guessing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import msgspec

from workbench.alerts.model import Alert
from workbench.schema import Reading

MIN_KEY_BYTES = 16
CACHE_LIMIT = 200_000
PREFIX = "dev-"


class Pseudonymiser:
    """Maps device ids to ``dev-<20 hex digits>`` with HMAC-SHA-256 under a secret key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(
                f"the pseudonymisation key has {len(key)} bytes; it needs at least "
                f"{MIN_KEY_BYTES} (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        self._key = key
        self._cache: dict[str, str] = {}

    def device(self, device_id: str) -> str:
        """The pseudonym of one device id."""
        alias = self._cache.get(device_id)
        if alias is None:
            digest = hmac.new(self._key, device_id.encode(), hashlib.sha256).hexdigest()
            alias = PREFIX + digest[:20]
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[device_id] = alias
        return alias

    def reading(self, reading: Reading) -> Reading:
        """A copy of the reading under its device's pseudonym."""
        return msgspec.structs.replace(reading, device_id=self.device(reading.device_id))

    def alert(self, alert: Alert) -> Alert:
        """A copy of the alert with the device id replaced, in its explanation too."""
        alias = self.device(alert.device_id)
        return msgspec.structs.replace(
            alert,
            device_id=alias,
            explanation=alert.explanation.replace(alert.device_id, alias),
        )


def pseudonymiser_from_env() -> Pseudonymiser | None:
    """The pseudonymiser configured by ``WORKBENCH_PSEUDONYM_KEY`` (text) or
    ``WORKBENCH_PSEUDONYM_KEY_FILE`` (a file holding the key); None when neither is set."""
    text = os.environ.get("WORKBENCH_PSEUDONYM_KEY")
    path = os.environ.get("WORKBENCH_PSEUDONYM_KEY_FILE")
    if text and path:
        raise ValueError("set WORKBENCH_PSEUDONYM_KEY or WORKBENCH_PSEUDONYM_KEY_FILE, not both")
    if path:
        try:
            return Pseudonymiser(Path(path).read_bytes().strip())
        except OSError as exc:
            raise ValueError(f"WORKBENCH_PSEUDONYM_KEY_FILE={path}: {exc.strerror}") from None
    return Pseudonymiser(text.encode()) if text else None
