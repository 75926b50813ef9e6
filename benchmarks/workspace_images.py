"""How long the reading view waits for an image: opening a study, and each window/level change.

Run: ``nice -n 10 .venv/bin/python benchmarks/workspace_images.py [--windows 40]``.
Writes ``benchmarks/results/workspace_images.{md,json}``.

The workspace renders PNGs on the server (``service.web.images``; WORKSPACE_NOTES §5, option A).
Two costs matter: *opening* a study (read the header, decode, modality LUT, shrink to at most
2048 px: ``load_frame``, once per study while it stays in the cache) and *each window change*
(window the cached values, invert, quantise, resize, PNG-encode: ``render_png`` with a window not
asked before). The viewer asks for a 512 px preview while the mouse moves and the 1024 px (2048
when zoomed) image when it stops, so the preview's time is what a drag feels like. Studies: full
resolution phantoms (the generator's own 1-3k matrices, uncompressed), one process, one thread.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from pydicom.filebase import DicomBytesIO

from model.data.phantom import sample_case
from model.data.phantom.dicom_export import to_dicom
from service.web import images

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CASES = (1, 2, 4)  # MONOCHROME1, MONOCHROME2 and MONOCHROME1 phantoms of different sizes


def write_study(folder: Path, index: int) -> tuple[int, int]:
    ds = to_dicom(sample_case(0, index))
    buffer = DicomBytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    (folder / "image.dcm").write_bytes(buffer.getvalue())
    return int(ds.Rows), int(ds.Columns)


def measure(folder: Path, key: str, windows: int) -> dict[str, object]:
    start = time.perf_counter()
    frame = images.load_frame(folder, key)
    opened = time.perf_counter() - start
    center, width = frame.window
    row: dict[str, object] = {"open_ms": opened * 1000}
    for side in images.SIDES:
        times, sizes = [], []
        for step in range(windows):
            window = (center + step * 7.0, width * (1 + step / windows))
            start = time.perf_counter()
            data = images.render_png(folder, key, window, False, side)
            times.append(time.perf_counter() - start)
            sizes.append(len(data))
        ordered = sorted(times)
        row[f"render_{side}"] = {
            "median_ms": statistics.median(times) * 1000,
            "p95_ms": ordered[int(0.95 * (len(ordered) - 1))] * 1000,
            "kb": statistics.median(sizes) / 1024,
        }
    return row


def table(rows: list[dict[str, object]]) -> str:
    header = (
        "| phantom | matrix | open study ms | 512 px median / p95 ms | 1024 px median / p95 ms "
        "| 2048 px median / p95 ms | PNG kB (512 / 1024 / 2048) |\n"
        "|---|---|---:|---:|---:|---:|---:|"
    )
    lines = [header]
    for row in rows:
        cells = [row[f"render_{side}"] for side in images.SIDES]
        timing = [f"{c['median_ms']:.0f} / {c['p95_ms']:.0f}" for c in cells]  # type: ignore[index]
        sizes = " / ".join(f"{c['kb']:.0f}" for c in cells)  # type: ignore[index]
        lines.append(
            f"| case {row['case']} ({row['photometric']}) | {row['matrix']} | "
            f"{row['open_ms']:.0f} | {' | '.join(timing)} | {sizes} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=40, help="window changes per size")
    args = parser.parse_args()
    rows = []
    for index in CASES:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            matrix = write_study(folder, index)
            row = measure(folder, f"bench-{index}", args.windows)
            row.update(
                case=index,
                matrix=f"{matrix[0]}x{matrix[1]}",
                photometric=sample_case(0, index).acquisition.photometric,
            )
            rows.append(row)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "workspace_images.json").write_text(json.dumps(rows, indent=2))
    machine = f"{platform.machine()}, {platform.python_version()}"
    text = f"""# Reading view: opening a study and changing its window

Machine: {machine}, one thread, shared with other engineers' jobs (times are upper bounds).
Produced by `benchmarks/workspace_images.py --windows {args.windows}`; each window differs
from every other, so no PNG comes from the cache.

{table(rows)}

"open study" decodes the uncompressed file and keeps its modality values at display size
(once per study while cached); each later window change only renders. While the mouse moves
the viewer asks for the 512 px preview, so its time is the lag a drag shows; the sharp image
follows when the mouse stops.
"""
    (RESULTS / "workspace_images.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
