"""Helpers for the exploration notebooks: bounded reads of a topic, tables, charts, live views."""
