"""``echocxr demo``: the README's first command, end to end on the embedded default.

It generates one phantom study as real DICOM, ingests it exactly as an upload would be, prints
what was read, and — when a report checkpoint is shipped — drafts the report and writes it as
JSON and DICOM SR. It never prints placeholder report text: without a model it says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the study and the draft.")] = Path(
        "demo-output"
    ),
    seed: Annotated[int, typer.Option(help="Phantom seed (same seed, same study).")] = 0,
    index: Annotated[int, typer.Option(help="Which phantom study of that seed.")] = 7,
) -> None:
    """Generate a phantom study, ingest it, and draft its report with the shipped model."""
    import dicom
    from model.data.phantom import sample_case
    from model.data.phantom.dicom_export import write_dicom

    case = sample_case(seed, index)
    study_dir = out / "study"
    study_dir.mkdir(parents=True, exist_ok=True)
    path = write_dicom(case, study_dir / "image.dcm")
    typer.echo(f"phantom study written: {path}")

    try:
        study = dicom.read_study(study_dir)
    except dicom.DicomError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(dicom.describe_study(study))

    import model
    from workers.drafting import draft_study, write_draft

    if model.shipped_checkpoint(model.DEFAULT_ENGINE) is None:
        typer.echo("no report checkpoint is shipped yet: ingestion only, no draft written")
        return
    written = write_draft(study, draft_study(study, model.load()), out / "report")
    typer.echo("\nDRAFT (machine-generated, preliminary, for radiologist review):")
    for line in written.draft.warnings():
        typer.echo(line)
    typer.echo(written.report_text)
    for kind, file in written.files.items():
        typer.echo(f"{kind}: {file}")
    typer.echo(f"\nphantom ground truth, for comparison:\n{case.report.text}")
