"""``echocxr ingest``: read a study and say what was read, or why it was refused.

pydicom and numpy load inside the command body so that ``echocxr --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def ingest(
    path: Annotated[
        Path, typer.Argument(help="A DICOM file, a folder, a ZIP/TAR archive or a DICOMDIR.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Read a chest radiograph study and print its images, sizes, spacing, views and set-asides."""
    import dicom

    try:
        study = dicom.read_study(path)
    except dicom.DicomError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(dicom.summarize_study(study), indent=2))
    else:
        typer.echo(dicom.describe_study(study))
