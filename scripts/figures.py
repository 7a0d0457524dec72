"""``python scripts/figures.py DIR… [--out DIR]``: the same as ``prunerun-figures`` (prunerun/figures/cli.py)."""
import sys

from prunerun.figures.cli import main

if __name__ == "__main__":
    sys.exit(main())
