"""Device profiles: a fleet's device types, their metrics and their wire format, declared in TOML
(``load``, ``write``), as data (``model``), compiled for the validator (``compile``), and proposed
from a topic's readings (``infer``, by the rules in ``guess``)."""
