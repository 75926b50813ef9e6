"""Where the trust benchmarks (``input_paths``, ``trust_*``) write: a table, its numbers, a plot.

Not a benchmark itself: the one way those scripts name and write
``benchmarks/results/<name>.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
Result = dict[str, Any]


def write_results(
    name: str,
    result: Result,
    markdown: Callable[[Result], str],
    plot: Callable[[Result, Path], None] | None = None,
) -> None:
    """The raw numbers as JSON, the table as Markdown (also printed), the plot as PNG."""
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    (RESULTS / f"{name}.md").write_text(table)
    if plot is not None:
        plot(result, RESULTS / f"{name}.png")
    print(table)


def arguments(doc: str, cache: Path, *, checkpoint: bool = True) -> argparse.ArgumentParser:
    """The options every trust benchmark takes: the checkpoint (a shipped name) and the cache
    of DICOM-path phantom images."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    if checkpoint:
        parser.add_argument("--checkpoint", default="dcd-b4")
    parser.add_argument("--cache-dir", type=Path, default=cache)
    return parser
