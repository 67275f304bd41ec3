"""Benchmarks that score the workbench's detectors against published results (NAB)."""
