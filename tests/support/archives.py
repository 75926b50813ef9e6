"""Small archives of phantom studies for the tests that draft them (command and worker)."""

from __future__ import annotations

from pathlib import Path


def phantom_archive(root: Path, n: int) -> list[Path]:
    """``n`` phantom studies, one DICOM file each, as a PACS export folder holds them."""
    from model.data.phantom import sample_case
    from model.data.phantom.dicom_export import write_dicom

    root.mkdir(parents=True, exist_ok=True)
    return [write_dicom(sample_case(7, i), root / f"study-{i}.dcm", downscale=8) for i in range(n)]
