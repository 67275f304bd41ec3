"""Publish alert states to ``iot.alerts`` (keyed by alert id: the topic is compacted, so the
latest state of every alert is kept) and read them back."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from workbench.alerts.model import Alert
from workbench.config import TOPIC_ALERTS
from workbench.streams.clients import ProducerBackend, deliver

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Alert).decode


def encode_alert(alert: Alert) -> bytes:
    """The wire form of an alert (JSON)."""
    return _encode(alert)


def decode_alert(data: bytes) -> Alert:
    """An alert from its wire form."""
    return _decode(data)


class AlertPublisher:
    """Sends alert states and waits for the broker, so offsets are committed only after."""

    def __init__(self, producer: ProducerBackend, topic: str = TOPIC_ALERTS) -> None:
        self.producer = producer
        self.topic = topic

    def publish(self, alerts: Iterable[Alert]) -> int:
        """Send and flush; how many were sent. Raises if the broker refused any."""
        return deliver(
            self.producer,
            self.topic,
            ((a.alert_id.encode(), encode_alert(a), None) for a in alerts),
        )
