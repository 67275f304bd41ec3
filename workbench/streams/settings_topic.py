"""Detector settings as a compacted, versioned topic: every worker applies the latest version.

A change is checked as a whole (``workbench.server.tuning``), then published as the full
settings in force with its version, who made it (and in which role), when, and the values
it moved from and to: the topic is the settings' store and their history. Workers follow the
topic (``workbench.streams.follow``) and apply a new version between two batches.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from workbench.alerts.model import SeverityPolicy
from workbench.config import TOPIC_SETTINGS, Settings
from workbench.models.ensemble import EnsembleDetector
from workbench.server import tuning
from workbench.streams.clients import ProducerBackend, deliver, make_producer
from workbench.streams.records import Record, read_partitions

if TYPE_CHECKING:
    from workbench.store.db import Database

KEY = b"detector-settings"
log = logging.getLogger(__name__)


class SettingsVersion(msgspec.Struct, kw_only=True):
    """One version of the detector settings, and the change that made it."""

    version: int
    settings: dict[str, dict[str, Any]]
    """Everything in force: {"detector": {…}, "severity": {…}}."""
    old: dict[str, dict[str, Any]]
    new: dict[str, dict[str, Any]]
    """The values this version changed, before and after."""
    changed_by: str
    role: str
    changed_at: float
    """Seconds since the epoch."""


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(SettingsVersion).decode


def defaults() -> dict[str, dict[str, Any]]:
    """The settings in force before anyone changed them."""
    return tuning.current(EnsembleDetector(), SeverityPolicy())


def decode_version(value: bytes) -> SettingsVersion:
    """A settings version from its wire form (JSON)."""
    return _decode(value)


def latest_version(settings: Settings, topic: str = TOPIC_SETTINGS) -> SettingsVersion | None:
    """The newest version on the topic (None: the defaults are in force)."""
    return newest(read_partitions(settings, topic), None)


def plan_version(
    current: SettingsVersion | None, body: object, changed_by: str, role: str
) -> SettingsVersion | None:
    """The version a change makes on top of ``current``; None when it changes nothing.

    Raises ValueError saying what is wrong with the change and what is allowed.
    """
    in_force = defaults() if current is None else current.settings
    detector = EnsembleDetector(**in_force["detector"])
    policy = SeverityPolicy(**in_force["severity"])
    old, new = tuning.plan_change(body, detector, policy)
    if not new:
        return None
    policy = tuning.apply_change(new, detector, policy)
    return SettingsVersion(
        version=1 if current is None else current.version + 1,
        settings=tuning.current(detector, policy),
        old=old,
        new=new,
        changed_by=changed_by,
        role=role,
        changed_at=time.time(),
    )


def publish_version(
    producer: ProducerBackend, version: SettingsVersion, topic: str = TOPIC_SETTINGS
) -> None:
    """Put a version on the topic; returns once the broker has it."""
    deliver(producer, topic, [(KEY, _encode(version), None)])


def apply_version(
    version: SettingsVersion, detector: EnsembleDetector, policy: SeverityPolicy
) -> SeverityPolicy:
    """Bring a detector to a version's settings; the severity policy to use from now on."""
    fixed = set(tuning.FIXED)
    detector.set_params(**{k: v for k, v in version.settings["detector"].items() if k not in fixed})
    return SeverityPolicy(**version.settings["severity"])


def newest(records: list[Record], held: SettingsVersion | None) -> SettingsVersion | None:
    """The newest version among ``held`` and the records (malformed ones are skipped, logged)."""
    for record in records:
        if record.key != KEY or not record.value:
            continue
        try:
            version = _decode(record.value)
        except msgspec.DecodeError as exc:  # not ours to apply; the next version will do
            log.warning("ignoring a malformed settings record: %s", exc)
            continue
        if held is None or version.version > held.version:
            held = version
    return held


def change_settings(
    settings: Settings,
    body: object,
    actor: str,
    role: str,
    topic: str = TOPIC_SETTINGS,
    database: Database | None = None,
) -> SettingsVersion | None:
    """Check a change against the latest version, publish the new version and audit it (in
    ``database``, default the configured store); None when it changes nothing. Raises
    ValueError saying what is wrong and what is allowed."""
    from workbench.security.audit import AuditLog
    from workbench.store.db import open_database

    version = plan_version(latest_version(settings, topic), body, actor, role)
    if version is None:
        return None
    producer = make_producer(settings, client_id="workbench-settings")
    try:
        publish_version(producer, version, topic)
    finally:
        producer.close()
    AuditLog(database or open_database(settings.database)).record(
        actor, "settings.change", f"settings v{version.version}", version.old, version.new
    )
    return version
