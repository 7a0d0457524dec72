"""prunerun: train, prune, fine-tune and measure pruning penalties from one Hydra config."""

__version__ = "0.1.0"
