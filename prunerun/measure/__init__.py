"""Measurements: pruning penalties on a copy, FLOPs and parameters."""
