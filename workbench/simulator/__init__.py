"""The device fleet simulator: seeded fleet model, labelled anomalies, live Kafka publisher."""

from workbench.simulator.anomalies import KINDS, Truth, decode_truth, encode_truth
from workbench.simulator.fleet import SITES, Device, Fleet
from workbench.simulator.run import SimulatorStats, run_simulator
from workbench.simulator.simulation import DEFAULT_ANOMALY_RATE, Simulation, simulate, validate

__all__ = [
    "DEFAULT_ANOMALY_RATE",
    "KINDS",
    "SITES",
    "Device",
    "Fleet",
    "Simulation",
    "SimulatorStats",
    "Truth",
    "decode_truth",
    "encode_truth",
    "run_simulator",
    "simulate",
    "validate",
]
