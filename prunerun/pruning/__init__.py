"""Pruning mechanics (how to remove), never scoring (what to remove)."""
from prunerun.pruning.bias_propagation import propagate_fill
from prunerun.pruning.gates import Gate, gate_state, remove_selection, remove_units, restore_gates
from prunerun.pruning.shrink import shrink
from prunerun.pruning.units import UnitLayer, alive_units, unit_layers, units_kept, units_total
from prunerun.pruning.weight_masks import WeightMasks, prunable_weights

__all__ = [
    "Gate", "UnitLayer", "WeightMasks", "alive_units", "gate_state", "prunable_weights",
    "propagate_fill", "remove_selection", "remove_units", "restore_gates", "shrink", "unit_layers", "units_kept",
    "units_total",
]
