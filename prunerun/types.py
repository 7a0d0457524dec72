"""Type aliases shared across layers; the bottom of the import graph (imports only torch)."""
from __future__ import annotations

import torch

Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs, integer class labels) of one minibatch
