"""Which phase-2 schedule to ship: one-step students of the same teacher, quality on two splits.

Run: ``.venv/bin/python benchmarks/dcd_schedule.py benchmarks/results/bench/schedule/*.json``.
Each JSON is one ``echocxr bench --batch-size 16`` run (``--split test`` or ``--split val``, 500
studies each). Training is deterministic (the first three epochs of every run reproduce the
shipped student's losses to four digits), so rows differ only by what their recipe adds; the
noise left is that of the 500 studies, which is why every row is scored on both splits and the
mean is what is compared. Writes ``benchmarks/results/dcd_schedule.md``.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("macro_f1_14", "micro_f1_5", "bleu4", "repeat_rate")
SPLITS = ("test", "val")


def scores(paths: list[Path]) -> dict[str, dict[str, dict[str, float]]]:
    """row -> split -> metric, from every run; a row scored twice on a split must agree
    (decoding is greedy, so the same checkpoint scores the same)."""
    table: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for path in paths:
        run = json.loads(path.read_text())
        for row in run["engines"]:
            found = {metric: row[metric] for metric in METRICS}
            if table[row["row"]].setdefault(run["split"], found) != found:
                raise SystemExit(f"{row['row']} scores differently on {run['split']} in {path}")
    return table


def markdown(table: dict[str, dict[str, dict[str, float]]]) -> str:
    header = " | ".join(f"{metric} {split}" for metric in METRICS for split in (*SPLITS, "mean"))
    lines = [
        "# One-step students by phase-2 schedule (B = 8, 500 test + 500 val studies, batch 16)",
        "",
        "From `benchmarks/dcd_schedule.py`; quality only (timing is in `engines_bench.md`).",
        "",
        f"| row | {header} |",
        "|---|" + "---|" * (len(METRICS) * (len(SPLITS) + 1)),
    ]
    for name, by_split in table.items():
        if set(by_split) != set(SPLITS):
            continue
        cells = []
        for metric in METRICS:
            values = [by_split[split][metric] for split in SPLITS]
            cells += [f"{v:.3f}" for v in values] + [f"**{sum(values) / len(values):.3f}**"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--notes", type=Path, help="Markdown appended after the table.")
    args = parser.parse_args()
    notes = "\n" + args.notes.read_text() if args.notes else ""
    (RESULTS / "dcd_schedule.md").write_text(markdown(scores(args.files)) + notes)


if __name__ == "__main__":
    main()
