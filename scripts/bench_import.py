"""Import time of a job's start against torch's own: ``python -c "import prunerun.runner"`` (what a
run imports before its first step) and ``prunerun --help`` against ``python -c "import torch,
torchvision.transforms"``, each a fresh interpreter, interleaved, the best of ``--repeats`` kept.
Target: runner ÷ torch ≤ 1.3.

    python scripts/bench_import.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

COMMANDS = {
    "import torch, torchvision.transforms": [sys.executable, "-c", "import torch, torchvision.transforms"],
    "import prunerun.runner": [sys.executable, "-c", "import prunerun.runner"],
    "prunerun --help": [sys.executable, "-m", "prunerun", "--help"],
}


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    best = {name: float("inf") for name in COMMANDS}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            best[name] = min(best[name], seconds(command))
    base = best["import torch, torchvision.transforms"]
    print("| command | seconds (best of %d) | ÷ torch + torchvision.transforms |" % args.repeats)
    print("|---|---|---|")
    for name, value in best.items():
        print(f"| `{name}` | {value:.2f} | {value / base:.2f} |")


if __name__ == "__main__":
    main()
