"""``python scripts/collect.py SWEEP_DIR [--out FILE]``: the same as ``prunerun-collect`` (prunerun/collect.py)."""
import sys

from prunerun.collect import main

if __name__ == "__main__":
    sys.exit(main())
