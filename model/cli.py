"""Model commands of ``echocxr``: ``train`` (stage 1, the autoregressive VLM).

Heavy imports (torch, transformers, pydicom) happen inside the commands so ``echocxr --help``
stays fast. Every expected failure ends in a one-line message and exit code 2 (a usage error).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_CACHE = Path("runs/cache")


def fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def train(
    config: Annotated[
        Path, typer.Option(help="Training recipe JSON, e.g. model/configs/ar-tiny.json.")
    ],
    out: Annotated[
        Path, typer.Option(help="Run directory: snapshots, logs and the final checkpoint/.")
    ],
    stage: Annotated[str, typer.Option(help="Training stage: ar (stage 1), rad or dcd.")] = "ar",
    seed: Annotated[
        int, typer.Option(help="Seed of initialisation, sample order and Q&A choice.")
    ] = 0,
    cache_dir: Annotated[
        Path, typer.Option(help="Where rendered training images are cached.")
    ] = DEFAULT_CACHE,
) -> None:
    """Train a model stage; re-running the same command resumes an interrupted run."""
    from model.config import ConfigError
    from model.data.datasets import DatasetError

    if stage != "ar":
        raise fail(
            f"stage {stage!r} is trained by the diffusion commands (`echocxr distill`); "
            "use --stage ar here"
        )
    from model.train import run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        checkpoint = run(config, out, seed, cache_dir)
    except (ConfigError, DatasetError) as err:
        raise fail(str(err)) from err
    typer.echo(f"checkpoint written to {checkpoint}")
