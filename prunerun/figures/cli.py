"""Regenerate the papers' figures from run folders: ``prunerun-figures DIR… [--out DIR]``.

Reads only the CSVs of every run found below the given folders (single runs or sweeps), writes a
PNG and a PDF per figure (CSV and Markdown per table) whose data is present, and lists the ones it
skipped with the reason. Imports no training code (``python -m prunerun.figures.cli`` works too).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from prunerun.figures import FIGURES, SkipFigure, list_figures, load_figures  # noqa: E402
from prunerun.results import find_runs, load_tables  # noqa: E402


def markdown(table) -> str:
    """A DataFrame as a Markdown table, floats to three decimals."""
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + " --- |" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write(name: str, result, out: Path) -> list[Path]:
    """Save a figure as PNG + PDF, or a table as CSV + Markdown."""
    if FIGURES.get(name).kind == "table":
        paths = [out / f"{name}.csv", out / f"{name}.md"]
        result.to_csv(paths[0], index=False)
        paths[1].write_text(markdown(result))
        return paths
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for path in paths:
        result.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(result)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prunerun-figures", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run or sweep folders (searched recursively)")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: <first dir>/figures)")
    parser.add_argument("--only", default="", help="comma-separated figure names (default: all)")
    args = parser.parse_args(argv)
    missing = [str(d) for d in args.dirs if not d.is_dir()]
    if missing:
        print(f"figures: error: no such folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    runs = find_runs(args.dirs)
    if not runs:
        print(f"figures: error: no run folders (with metrics.csv) below {', '.join(map(str, args.dirs))}", file=sys.stderr)
        return 2
    load_figures()
    tables = load_tables(runs)
    out = args.out or args.dirs[0] / "figures"
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.only.split(",") if n] or list_figures()
    made, skipped = [], []
    for name in names:
        try:
            result = FIGURES.get(name)(tables)
        except SkipFigure as reason:
            skipped.append((name, str(reason)))
            continue
        made.append((name, write(name, result, out)))
    print(f"{len(runs)} runs read; {len(made)} figures written to {out}, {len(skipped)} skipped")
    for name, paths in made:
        print(f"  wrote   {name}: {', '.join(p.name for p in paths)}")
    for name, reason in skipped:
        print(f"  skipped {name}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
