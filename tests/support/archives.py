"""Small archives of phantom studies, and the command that drafts them, for the archive tests."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from click.testing import Result

    from service.archive import Outcome, ReadStudy


def phantom_archive(root: Path, n: int) -> list[Path]:
    """``n`` phantom studies, one DICOM file each, as a PACS export folder holds them."""
    from model.data.phantom import sample_case
    from model.data.phantom.dicom_export import write_dicom

    root.mkdir(parents=True, exist_ok=True)
    return [write_dicom(sample_case(7, i), root / f"study-{i}.dcm", downscale=8) for i in range(n)]


def read_or_die(entry: Path, image_size: int) -> ReadStudy | Outcome:
    """``read_entry``, except that an entry named ``kills-reader*`` kills the process reading it
    with SIGKILL, as the kernel's OOM killer does (no exception, no clean-up)."""
    from service.archive import read_entry

    if entry.name.startswith("kills-reader"):
        os.kill(os.getpid(), signal.SIGKILL)
    return read_entry(entry, image_size)


def report_archive(
    archive: Path, out: Path, *args: str, env: dict[str, str] | None = None, readers: int = 0
) -> Result:
    """The command, reading in this process unless ``readers`` processes are asked for."""
    from typer.testing import CliRunner

    from service.cli import app

    command = ["report-archive", str(archive), "--out", str(out), "--readers", str(readers)]
    return CliRunner().invoke(app, [*command, *args], env=env or {})
