"""The numbers behind MRP figs. 2–3 from a sweep's penalties.csv: mean ΔC per scorer with zero removal
and with mean replacement, and the share of pairs where mean replacement gives the smaller ΔC.

    python scripts/mrp_penalties_summary.py SWEEP_DIR [--finetune-steps 0]

A pair is one (seed, step, layer group, scorer, fraction) measured both ways; the share is given
over all pairs and per seed (min–max), so the spread between seeds is visible.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prunerun.results import load_tables  # noqa: E402


def summary(sweep: Path, finetune_steps: int = 0) -> str:
    penalties = load_tables([sweep])["penalties"]
    rows = penalties[(penalties["level"] == "unit") & (penalties["finetune_steps"] == finetune_steps)]
    keys = ["seed", "step", "layer", "scorer", "fraction"]
    pairs = rows.pivot_table(index=keys, columns="mean_replacement", values="delta_loss", aggfunc="first").dropna()
    pairs.columns = ["zero", "mean"]
    pairs["wins"] = pairs["mean"] < pairs["zero"]
    pairs["tie"] = pairs["mean"] == pairs["zero"]
    lines = [f"{pairs.index.get_level_values('seed').nunique()} seeds, {len(pairs)} pairs, {int(pairs['tie'].sum())} "
             "ties (nothing removed, or the same loss)", "",
             "| scorer | mean ΔC, zero removal | mean ΔC, mean replacement | MR wins | per seed (min–max) | "
             "MR wins, ties left out |", "|---|---|---|---|---|---|"]

    def line(name: str, part) -> str:
        per_seed = part.groupby(level="seed")["wins"].mean()
        decided = part[~part["tie"]]
        return (f"| {name} | {part['zero'].mean():.5f} | {part['mean'].mean():.5f} | {part['wins'].mean():.3f} | "
                f"{per_seed.min():.3f}–{per_seed.max():.3f} | {decided['wins'].mean():.3f} |")

    for scorer, part in pairs.groupby(level="scorer"):
        lines.append(line(scorer, part))
    lines.append(line("all", pairs))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--finetune-steps", type=int, default=0)
    args = parser.parse_args()
    print(summary(args.sweep, args.finetune_steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
