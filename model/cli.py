"""Training commands of ``echocxr``: one per stage (``train``, ``train-rad``, ``distill``),
``report-ngrams`` (the n-gram table a checkpoint's one-step decoding writes under) and
``fit-trust`` (the statistics of its trust signals).

Each stage reads one recipe from ``model/configs/`` and writes a resumable run directory whose
``checkpoint/`` is the result; re-running the same command resumes an interrupted run. Heavy
imports (torch, transformers, pydicom) happen inside the commands so ``echocxr --help`` stays
fast. Every expected failure ends in a one-line message and exit code 2 (a usage error).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_CACHE = Path("runs/cache")

RecipeOption = Annotated[
    Path, typer.Option(help="Recipe JSON under model/configs/, e.g. model/configs/dcd-b4.json.")
]
OutOption = Annotated[
    Path, typer.Option(help="Run directory: snapshots and the final checkpoint/.")
]
CacheOption = Annotated[Path, typer.Option(help="Where rendered training images are cached.")]


def fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def train(
    config: RecipeOption,
    out: OutOption,
    seed: Annotated[
        int, typer.Option(help="Seed of initialisation, sample order and Q&A choice.")
    ] = 0,
    cache_dir: CacheOption = DEFAULT_CACHE,
) -> None:
    """Stage 1: train the autoregressive VLM (and assistant) from a recipe; re-run to resume."""
    from model.config import ConfigError
    from model.data.datasets import DatasetError
    from model.train import run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        checkpoint = run(config, out, seed, cache_dir)
    except (ConfigError, DatasetError) as err:
        raise fail(str(err)) from err
    typer.echo(f"checkpoint written to {checkpoint}")


def stage_command(stage: str, summary: str) -> Callable[..., None]:
    """The ``train-rad`` or ``distill`` command: the same options, one stage each."""

    def command(
        config: RecipeOption,
        out: OutOption,
        seed: Annotated[int, typer.Option(help="Seed of batch order, noise and epochs.")] = 0,
        cache_dir: CacheOption = DEFAULT_CACHE,
    ) -> None:
        run_stage(stage, config, out, seed, cache_dir)

    command.__doc__ = summary
    return command


train_rad = stage_command(
    "rad", "Stage 2 (RAD): turn the AR checkpoint into a block-diffusion model; re-run to resume."
)
distill = stage_command(
    "dcd",
    "Stage 3 (DCD): distil the RAD teacher into a one-step-per-block student; re-run to resume.",
)


def run_stage(stage: str, config: Path, out: Path, seed: int, cache_dir: Path) -> None:
    """Run (or resume) stage ``rad`` or ``dcd`` from its recipe; one-line errors, exit code 2."""
    from model.blocks import DiffusionError
    from model.checkpoint import CheckpointError
    from model.config import ConfigError
    from model.diffusion import RADConfig, train_rad
    from model.distill import DCDConfig, distill

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        if stage == "rad":
            path = train_rad(RADConfig.from_file(config), out, cache_dir, seed)
        else:
            path = distill(DCDConfig.from_file(config), out, cache_dir, seed)
    except (DiffusionError, CheckpointError, ConfigError) as err:
        raise fail(str(err)) from err
    typer.echo(f"{stage.upper()} checkpoint written to {path}")


def report_ngrams(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint directory that gets the table.")],
    config: Annotated[
        Path,
        typer.Option(
            help="Recipe whose phantom training reports are read (its train_studies and "
            "phantom_seed), e.g. model/configs/dcd-b8.json."
        ),
    ],
    order: Annotated[
        int | None, typer.Option(help="Tokens per n-gram [default: the engine's order]")
    ] = None,
) -> None:
    """Give a checkpoint the token n-grams of its training reports, for one-step decoding.

    `echocxr train-rad` and `echocxr distill` write them; this adds them to a checkpoint built
    before they did. The weights are not touched.
    """
    from model.checkpoint import CheckpointError, add_report_ngrams, read_manifest
    from model.data.datasets import phantom_records
    from model.report_ngrams import ORDER, ReportNgrams, ReportNgramsError
    from model.tokenizer import Tokenizer, TokenizerError

    seed, studies = recipe_training_set(config)
    try:
        read_manifest(checkpoint)
        tokenizer = Tokenizer.load(checkpoint)
        texts = (r.report_text for r in phantom_records(seed, studies, "train"))
        ngrams = ReportNgrams.of_texts(texts, tokenizer, order or ORDER)
        add_report_ngrams(checkpoint, ngrams)
    except (CheckpointError, TokenizerError, ReportNgramsError) as err:
        raise fail(str(err)) from err
    typer.echo(f"{len(ngrams.keys)} report {ngrams.order}-grams written to {checkpoint}")


def recipe_training_set(config: Path) -> tuple[int, int]:
    """(phantom seed, training studies) of any stage's recipe JSON."""
    try:
        recipe = json.loads(config.read_text())
        seed, studies = int(recipe.get("phantom_seed", 0)), int(recipe["train_studies"])
    except (OSError, json.JSONDecodeError) as err:
        raise fail(f"cannot read the recipe {config}: {err}") from err
    except (KeyError, TypeError, ValueError) as err:
        raise fail(f"recipe {config} does not say which studies it trained on: {err}") from err
    return seed, studies


def fit_trust(
    checkpoint: Annotated[
        str, typer.Option(help="A shipped checkpoint's name (e.g. dcd-b4) or a directory.")
    ],
    cache_dir: CacheOption = DEFAULT_CACHE,
    val_studies: Annotated[int, typer.Option(help="Validation studies it is fitted on.")] = 2000,
    train_studies: Annotated[
        int, typer.Option(help="Training studies the feature distribution is fitted on.")
    ] = 2000,
) -> None:
    """Fit a checkpoint's trust statistics (finding calibration, out-of-distribution gate,
    critical thresholds) on phantom studies read through DICOM; write them as its trust.json."""
    from model import CHECKPOINTS
    from model.checkpoint import CheckpointError
    from model.data.datasets import DatasetError
    from model.trust_fit import fit
    from model.trust_stats import TrustStatisticsError

    shipped = CHECKPOINTS / checkpoint
    directory = shipped if "/" not in checkpoint and shipped.is_dir() else Path(checkpoint)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        statistics = fit(directory, cache_dir, 0, val_studies, train_studies)
    except (CheckpointError, DatasetError, TrustStatisticsError) as err:
        raise fail(str(err)) from err
    typer.echo(f"trust statistics written to {statistics.save(directory)}")
