"""Do two ``echocxr bench`` runs of the same rows give the same numbers, timings aside?

Run: ``.venv/bin/python benchmarks/bench_compare.py BEFORE.json AFTER.json [...]`` with the files
in pairs (before, after); writes ``benchmarks/results/refactor_bench_check.md``. Every field of
every row is compared exactly, except the wall-clock ones (``ms_per_report``,
``speedup_vs_ar``), which depend on what else the machine runs, and the run's start time.
Issue 28 used it to show that its refactor left the benchmark's numbers unchanged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
TIMED = {"ms_per_report", "speedup_vs_ar"}


def untimed(run: dict[str, Any]) -> dict[str, Any]:
    """The run's rows by name, without the wall-clock fields."""
    return {
        row["row"]: {key: value for key, value in row.items() if key not in TIMED}
        for row in run["engines"]
    }


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """'row: field' for every field that differs (or exists on one side only)."""
    rows_before, rows_after = untimed(before), untimed(after)
    found = [f"{name}: row" for name in sorted(set(rows_before) ^ set(rows_after))]
    for name in sorted(set(rows_before) & set(rows_after)):
        old, new = rows_before[name], rows_after[name]
        found += [
            f"{name}: {key}"
            for key in sorted(old.keys() | new.keys())
            if old.get(key) != new.get(key)
        ]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="BEFORE AFTER [BEFORE AFTER ...]")
    args = parser.parse_args()
    if len(args.files) % 2:
        raise SystemExit("give the files in pairs: BEFORE AFTER")
    lines = [
        "# `echocxr bench` before and after issue 28's refactor",
        "",
        "Each pair is one `echocxr bench` command run on commit 4f9c863 (before) and on the",
        "refactored code (after), same studies and checkpoints; every field of every row compared",
        "exactly except the wall-clock ones. From `benchmarks/bench_compare.py`.",
        "",
        "The commands, each run on both versions (64 test studies, batch 16, one thread):",
        "",
        "```",
        "echocxr bench --engines ar,diffusion-multistep,diffusion-onestep@rad,diffusion-onestep \\",
        "  --checkpoint diffusion-multistep=model/checkpoints/rad-b8 \\",
        "  --checkpoint diffusion-onestep@rad=model/checkpoints/rad-b8 \\",
        "  --block-size 8 --n 64 --batch-size 16 --json before-b8.json",
        "echocxr bench --engines ar,diffusion-onestep --block-size 4 --n 64 --batch-size 16 \\",
        "  --json before-b4.json",
        "```",
        "",
        "The run's own header lost one key, `phantom_reports` (always `mixed`), with the canonical",
        "wording (`docs/decisions/013-canonical-wording.md`).",
        "",
        "| before | after | rows | fields compared | differing fields | macro-F1 (14) per row |",
        "|---|---|---|---|---|---|",
    ]
    for before_path, after_path in zip(args.files[::2], args.files[1::2], strict=True):
        before, after = (json.loads(path.read_text()) for path in (before_path, after_path))
        rows = untimed(after)
        differing = differences(before, after)
        f1 = ", ".join(f"{name} {row['macro_f1_14']:.3f}" for name, row in rows.items())
        lines.append(
            f"| `{before_path.name}` | `{after_path.name}` | {len(rows)} | "
            f"{sum(len(row) for row in rows.values())} | {'; '.join(differing) or 'none'} | {f1} |"
        )
    (RESULTS / "refactor_bench_check.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
