"""Recordings: CSV or JSON-lines files of past readings, turned into readings in a profile's wire
format, in time order (``workbench replay`` publishes them; ``workbench eval labelled`` scores
the live detection on them)."""
