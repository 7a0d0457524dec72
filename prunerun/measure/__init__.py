"""Measurements: pruning penalties on a copy, rank correlation, unit traces, latency."""
