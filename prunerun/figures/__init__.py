"""Plots made from CSVs alone (never from training code)."""
