"""Scorers decide what to remove; they never modify the model.

``prunerun.scorers.units``: criteria that rank units (structured pruning) and the gate
statistics, normalisation and selection they share. ``prunerun.scorers.weights``: criteria
that rank single weight entries (unstructured pruning). Each package holds one registry,
filled by importing every module in it.
"""
