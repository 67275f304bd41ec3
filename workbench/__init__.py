"""IoT Live Workbench: live analytics for IoT fleets on Apache Kafka, Streamz and Jupyter."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("iot-workbench")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
