"""Device profiles: a fleet's device types, their metrics and their wire format, declared in TOML
(``load``), as data (``model``)."""
