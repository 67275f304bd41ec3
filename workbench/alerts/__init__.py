"""Alerts: incidents built from detector findings, with stable ids and severities."""
