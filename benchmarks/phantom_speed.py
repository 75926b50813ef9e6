"""Throughput of the phantom generator (target: >= 50 studies/s at 256 px on one core).

Three measurements, each the median of ``--repeats`` runs:

- ``sample+render`` on one core: ``sample_case`` then ``render(case, 256)`` for ``--studies``
  consecutive studies, timed by process CPU time (so another busy process on the machine does
  not count against us) and by wall time;
- the same with ``--workers`` processes (wall time; the fan-out ``write_dataset`` uses);
- full-resolution DICOM export (``write_dicom``, the case's own 1k-3k matrix and transfer
  syntax), studies/s on one core.

Run: ``nice -n 10 .venv/bin/python benchmarks/phantom_speed.py``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from model.data.phantom import render, sample_case
from model.data.phantom.dicom_export import write_dicom

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_PER_S = 50.0


def render_range(bounds: tuple[int, int]) -> int:
    """Sample and render studies [start, stop) at 256 px; returns how many."""
    for index in range(*bounds):
        render(sample_case(0, index), 256)
    return bounds[1] - bounds[0]


def timed(work: Callable[[], object]) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) for one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    return time.process_time() - cpu, time.perf_counter() - wall


def one_core(studies: int, repeats: int) -> dict[str, float]:
    render_range((0, 8))  # warm the vessel atlases
    runs = [timed(lambda: render_range((0, studies))) for _ in range(repeats)]
    return {
        "cpu_studies_per_s": studies / statistics.median(r[0] for r in runs),
        "wall_studies_per_s": studies / statistics.median(r[1] for r in runs),
    }


def many_cores(studies: int, workers: int, repeats: int) -> float:
    step = -(-studies // (workers * 4))
    chunks = [(start, min(start + step, studies)) for start in range(0, studies, step)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(render_range, [(0, 8)] * workers))
        walls = [timed(lambda: sum(pool.map(render_range, chunks)))[1] for _ in range(repeats)]
    return studies / statistics.median(walls)


def dicom_export(studies: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        cases = [sample_case(0, index) for index in range(studies)]
        cpu, wall = timed(
            lambda: [write_dicom(c, Path(folder) / f"{c.study_id}.dcm") for c in cases]
        )
        megapixels = sum(c.acquisition.rows * c.acquisition.columns for c in cases) / 1e6
    return {
        "cpu_studies_per_s": studies / cpu,
        "wall_studies_per_s": studies / wall,
        "mean_megapixels": megapixels / studies,
    }


def write_results(results: dict[str, object]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "phantom_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    single = results["one_core_256px"]
    dicom = results["dicom_full_resolution"]
    assert isinstance(single, dict) and isinstance(dicom, dict)
    lines = [
        "# Phantom generator throughput",
        "",
        f"Machine: {results['machine']}, 1-minute load average "
        f"{results['load_average_1min_at_start']:.1f} at start; {results['note']}.",
        "",
        "| measurement | studies/s | target |",
        "|---|---|---|",
        f"| sample + render 256 px, one core (CPU time) | {single['cpu_studies_per_s']:.1f} "
        f"| >= {TARGET_PER_S:.0f} |",
        f"| sample + render 256 px, one core (wall) | {single['wall_studies_per_s']:.1f} | |",
        f"| sample + render 256 px, {results['workers']} processes (wall) "
        f"| {results['many_cores_wall_studies_per_s']:.1f} | |",
        f"| full-res DICOM export, one core (CPU time of this process) "
        f"| {dicom['cpu_studies_per_s']:.2f} | |",
        f"| full-res DICOM export, one core (wall, includes dcmcjpeg) "
        f"| {dicom['wall_studies_per_s']:.2f} | |",
        "",
        f"Full-resolution matrices average {dicom['mean_megapixels']:.1f} megapixels; the five "
        "transfer syntaxes are mixed as the generator draws them.",
        "",
    ]
    (RESULTS / "phantom_speed.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dicom-studies", type=int, default=20)
    args = parser.parse_args()
    results: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "note": "shared by other jobs while measured; CPU-time rates are the robust figure",
        "load_average_1min_at_start": os.getloadavg()[0],
        "studies": args.studies,
        "workers": args.workers,
        "one_core_256px": one_core(args.studies, args.repeats),
        "many_cores_wall_studies_per_s": many_cores(args.studies, args.workers, args.repeats),
        "dicom_full_resolution": dicom_export(args.dicom_studies),
    }
    write_results(results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
