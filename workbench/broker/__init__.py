"""The workbench's own Apache Kafka broker: one local KRaft node (broker+controller, no ZooKeeper).

One module per job: ``java`` finds the JVM and Maven, ``jars`` fetches and caches the jars,
``process`` writes the config and runs, probes and stops the broker, ``lifecycle`` gives a command
a broker for as long as it runs. Port probing is ``workbench.ports``.
"""

from workbench.broker.errors import BrokerError
from workbench.broker.jars import KAFKA_VERSION, fetch_jars
from workbench.broker.lifecycle import local_broker_for
from workbench.broker.process import BrokerStatus, LocalBroker

__all__ = [
    "KAFKA_VERSION",
    "BrokerError",
    "BrokerStatus",
    "LocalBroker",
    "fetch_jars",
    "local_broker_for",
]
