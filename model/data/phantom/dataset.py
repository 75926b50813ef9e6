"""Write a phantom data set to disk: DICOM, reports, previews, manifest, contact sheet.

Layout under ``out_dir``::

    dicom/<study_id>.dcm      full-resolution CR/DX file (no labels in the header)
    reports/<study_id>.txt    FINDINGS / IMPRESSION text
    previews/<study_id>.png   the 256 px training render, 8-bit
    manifest.csv              one row per study: ids, split, 14 labels, attributes, paths
    contact_sheet.png         the first studies in a grid, their labels written underneath

Every file is written to a temporary name and renamed, the manifest last, so an interrupted
run never leaves a manifest that points at missing or half-written files. Nothing depends on
the clock or on worker scheduling, so the same seed reproduces every byte.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import tempfile
import textwrap
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from clinical_eval.observations import OBSERVATIONS
from model.data.phantom.cases import PhantomCase
from model.data.phantom.dicom_export import write_dicom
from model.data.phantom.render import render
from model.data.phantom.sampling import sample_case

PREVIEW_SIZE = 256
SHEET_COLUMNS, SHEET_ROWS, SHEET_CELL, SHEET_CAPTION = 8, 6, 192, 46
MANIFEST_FIELDS = (
    "study_id", "patient_id", "split", *OBSERVATIONS, "report_style", "attributes",
    "dicom_path", "report_path", "preview_path",
)  # fmt: skip


def write_dataset(
    out_dir: Path, n: int, seed: int = 0, workers: int = 1, downscale: int = 1
) -> Path:
    """Generate ``n`` studies into ``out_dir`` and return the manifest's path.

    ``workers`` > 1 spreads studies over processes; the output is identical either way.
    ``downscale`` shrinks the DICOM matrices (tests, quick looks); previews are unaffected.

    Raises
    ------
    ValueError
        If ``n`` < 1, ``seed`` < 0, ``workers`` < 1 or ``downscale`` < 1.
    """
    for name, value, minimum in (("n", n, 1), ("seed", seed, 0), ("workers", workers, 1),
                                 ("downscale", downscale, 1)):  # fmt: skip
        if value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")
    out_dir = Path(out_dir)
    for sub in ("dicom", "reports", "previews"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    jobs = [(out_dir, seed, index, downscale) for index in range(n)]
    if workers == 1:
        rows = [_write_study(*job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(_write_study_job, jobs, chunksize=max(1, n // (4 * workers))))
    _write_contact_sheet(out_dir / "contact_sheet.png", seed, min(n, SHEET_COLUMNS * SHEET_ROWS))
    manifest = out_dir / "manifest.csv"
    _atomic_write(manifest, _manifest_bytes(rows))
    return manifest


def case_attributes(case: PhantomCase) -> dict[str, Any]:
    """Findings and acquisition as plain JSON-able data (the manifest's attributes column)."""
    findings = [
        {k: v for k, v in dataclasses.asdict(f).items() if v is not None} for f in case.findings
    ]
    return {
        "scenario": case.scenario,
        "findings": findings,
        "acquisition": dataclasses.asdict(case.acquisition),
        "ctr": case.anatomy.ctr,
    }


def _write_study_job(job: tuple[Path, int, int, int]) -> dict[str, str]:
    return _write_study(*job)


def _write_study(out_dir: Path, seed: int, index: int, downscale: int) -> dict[str, str]:
    case = sample_case(seed, index)
    paths = {
        "dicom_path": f"dicom/{case.study_id}.dcm",
        "report_path": f"reports/{case.study_id}.txt",
        "preview_path": f"previews/{case.study_id}.png",
    }
    write_dicom(case, out_dir / paths["dicom_path"], downscale)
    _atomic_write(out_dir / paths["report_path"], (case.report.text + "\n").encode())
    _atomic_write(out_dir / paths["preview_path"], _png_bytes(render(case, PREVIEW_SIZE)))
    row = {
        "study_id": case.study_id,
        "patient_id": case.patient_id,
        "split": case.split,
        "report_style": case.report.style,
        "attributes": json.dumps(case_attributes(case), sort_keys=True),
        **paths,
    }
    for name in OBSERVATIONS:
        value = case.labels[name]
        row[name] = "" if value is None else str(value)
    return row


def _manifest_bytes(rows: Iterable[dict[str, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _png_bytes(image: np.ndarray) -> bytes:
    """8-bit PNG without text chunks or timestamps, so it is byte-reproducible."""
    from PIL import Image

    buffer = io.BytesIO()
    pixels = np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        Path(temp).replace(path)
    finally:
        Path(temp).unlink(missing_ok=True)


def label_caption(case: PhantomCase) -> str:
    """Short human caption: positives by name, uncertain ones with a question mark."""
    parts = [name for name in OBSERVATIONS if case.labels[name] == 1]
    parts += [f"{name}?" for name in OBSERVATIONS if case.labels[name] == -1]
    return f"{case.study_id[-7:]} {case.acquisition.view}: " + (", ".join(parts) or "blank")


def _write_contact_sheet(path: Path, seed: int, count: int) -> None:
    from PIL import Image, ImageDraw

    columns = min(SHEET_COLUMNS, count)
    rows = -(-count // columns)
    height = SHEET_CELL + SHEET_CAPTION
    sheet = Image.new("L", (columns * SHEET_CELL, rows * height), color=255)
    draw = ImageDraw.Draw(sheet)
    for index in range(count):
        case = sample_case(seed, index)
        tile = np.rint(render(case, SHEET_CELL) * 255).astype(np.uint8)
        left, top = (index % columns) * SHEET_CELL, (index // columns) * height
        sheet.paste(Image.fromarray(tile), (left, top))
        caption = textwrap.wrap(label_caption(case), width=34)[:4]
        draw.multiline_text((left + 3, top + SHEET_CELL + 1), "\n".join(caption), fill=0,
                            spacing=0)  # fmt: skip
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=False)
    _atomic_write(path, buffer.getvalue())
