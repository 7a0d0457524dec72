"""``python -m prunerun ...``: the same as the ``prunerun`` console script."""
from prunerun.cli import main

if __name__ == "__main__":
    main()
