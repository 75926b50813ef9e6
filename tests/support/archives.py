"""Small archives of phantom studies, and the command that drafts them, for the archive tests."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from click.testing import Result

    from workers.readers import Outcome, ReadStudy


def phantom_archive(root: Path, n: int, downscale: int = 8) -> list[Path]:
    """``n`` phantom studies, one DICOM file each, as a PACS export folder holds them; small
    (``downscale`` 8) unless asked."""
    from model.data.phantom import sample_case
    from model.data.phantom.dicom_export import write_dicom

    root.mkdir(parents=True, exist_ok=True)
    return [
        write_dicom(sample_case(7, i), root / f"study-{i}.dcm", downscale=downscale)
        for i in range(n)
    ]


def read_or_die(entry: Path, image_size: int) -> ReadStudy | Outcome:
    """``read_entry``, except that an entry named ``kills-reader*`` kills the process reading it
    with SIGKILL, as the kernel's OOM killer does (no exception, no clean-up); one named
    ``kills-reader-once*`` does so only the first time (a ``.killed`` file beside it says it did),
    one named ``raises*`` raises as a bug in a reader would, and one named ``hangs*`` never
    returns, as a decoder stuck on a damaged file. Every entry read leaves a ``.read`` file
    beside it."""
    from workers.readers import read_entry

    if entry.name.startswith("raises"):
        raise LookupError("a bug in the reader")
    if entry.name.startswith("hangs"):
        time.sleep(3600)
    once = entry.with_name(entry.name + ".killed")
    if entry.name.startswith("kills-reader") and not once.exists():
        if entry.name.startswith("kills-reader-once"):
            once.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    read = read_entry(entry, image_size)
    entry.with_name(entry.name + ".read").touch()
    return read


def report_archive(
    archive: Path, out: Path, *args: str, env: dict[str, str] | None = None, readers: int = 0
) -> Result:
    """The command, reading in this process unless ``readers`` processes are asked for."""
    from typer.testing import CliRunner

    from service.cli import app

    command = ["report-archive", str(archive), "--out", str(out), "--readers", str(readers)]
    return CliRunner().invoke(app, [*command, *args], env=env or {})
