"""``echocxr phantom``: write a phantom data set (DICOM, reports, manifest, contact sheet)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def phantom(
    out: Annotated[Path, typer.Option(help="Output folder (created if missing).")] = Path(
        "phantom-output"
    ),
    n: Annotated[int, typer.Option(help="Number of studies.")] = 200,
    seed: Annotated[
        int, typer.Option(help="Data set seed; the same seed gives the same bytes.")
    ] = 0,
    workers: Annotated[int, typer.Option(help="Processes to spread the studies over.")] = 1,
    downscale: Annotated[
        int, typer.Option(help="Divide the DICOM matrix by this (1 = full 1k-3k resolution).")
    ] = 1,
) -> None:
    """Generate phantom chest radiographs with ground-truth labels and reports."""
    from model.data.phantom.dataset import write_dataset
    from model.data.phantom.dicom_export import PhantomExportError

    if out.exists() and not out.is_dir():
        typer.echo(f"error: --out {out} exists and is not a folder", err=True)
        raise typer.Exit(2)
    try:
        manifest = write_dataset(out, n, seed=seed, workers=workers, downscale=downscale)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except (PhantomExportError, OSError) as error:
        typer.echo(f"error: could not write the data set to {out}: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {n} studies; manifest: {manifest}")
