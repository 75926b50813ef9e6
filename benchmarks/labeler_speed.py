"""Throughput of the CheXpert-rule labeler on one CPU core (target: >= 200 reports/s).

Reports are the validation set's short reports, each lengthened with three of its sentences so a
report has ~10 sentences like a real findings + impression, repeated to ``--reports`` studies.
The pipeline is built once (timed separately), then ``label`` runs ``--repeats`` times; the table
gives the median. A cProfile of one run lists where the time goes.

Run: ``nice -n 10 taskset -c 0 .venv/bin/python benchmarks/labeler_speed.py``
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import time
from pathlib import Path
from typing import Any

from clinical_eval.labeler import label, pipeline
from clinical_eval.validation import load_examples

RESULTS = Path(__file__).resolve().parent / "results"


def corpus(n_reports: int) -> list[str]:
    """Realistic-length reports built from the hand-written validation reports and sentences."""
    examples = load_examples()
    reports = [e.text for e in examples if e.kind == "report"]
    sentences = [e.text for e in examples if e.kind == "sentence"]
    texts = []
    for i in range(n_reports):
        extra = " ".join(sentences[(i * 3 + k) % len(sentences)] for k in range(3))
        texts.append(reports[i % len(reports)].replace("IMPRESSION:", extra + "\nIMPRESSION:"))
    return texts


def profile_top(texts: list[str], limit: int = 8) -> list[str]:
    """The functions with the most own time in one labelling run."""
    profiler = cProfile.Profile()
    profiler.enable()
    label(texts)
    profiler.disable()
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(limit)
    return [line for line in stream.getvalue().splitlines() if "(" in line and "/" in line][:limit]


def main() -> None:
    """Measure, then write labeler_speed.md and labeler_speed.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    start = time.perf_counter()
    pipeline()
    build_s = time.perf_counter() - start
    texts = corpus(args.reports)
    words = sum(len(t.split()) for t in texts) / len(texts)
    label(texts[:50])
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        label(texts)
        rates.append(len(texts) / (time.perf_counter() - start))
    result: dict[str, Any] = {
        "reports": len(texts),
        "mean_words_per_report": round(words, 1),
        "pipeline_build_s": round(build_s, 3),
        "reports_per_s_median": round(statistics.median(rates), 1),
        "reports_per_s_runs": [round(r, 1) for r in rates],
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "profile_top_tottime": profile_top(texts[:500]),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "labeler_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    table = [
        "# CheXpert-rule labeler speed (one CPU core)",
        "",
        "Produced by `benchmarks/labeler_speed.py`; target >= 200 reports/s.",
        "",
        "| reports | words/report | pipeline build (s) | reports/s (median) | runs |",
        "|---:|---:|---:|---:|---|",
        f"| {result['reports']} | {result['mean_words_per_report']} | "
        f"{result['pipeline_build_s']} | {result['reports_per_s_median']} | "
        f"{', '.join(str(r) for r in result['reports_per_s_runs'])} |",
        "",
        f"CPU affinity {result['cpu_affinity']} ({result['cpu']}), Python {result['python']}; "
        "the machine was shared with other jobs, so these are lower bounds.",
        "",
        "Top functions by own time (cProfile, 500 reports):",
        "",
        "```",
        *result["profile_top_tottime"],
        "```",
        "",
    ]
    (RESULTS / "labeler_speed.md").write_text("\n".join(table))
    print("\n".join(table))


if __name__ == "__main__":
    main()
