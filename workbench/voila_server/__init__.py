"""The dashboard's server: Voilà, hardened for viewers who share one machine (see ``app``)."""
