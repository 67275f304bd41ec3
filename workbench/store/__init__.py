"""Persistent state of the live API: alerts with their lifecycle, tokens, the audit log."""
