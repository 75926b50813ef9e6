"""Model commands of ``echocxr``: ``train`` (stage 1, the autoregressive VLM) and
``report-ngrams`` (the n-gram table a checkpoint's one-step decoding writes under).

Heavy imports (torch, transformers, pydicom) happen inside the commands so ``echocxr --help``
stays fast. Every expected failure ends in a one-line message and exit code 2 (a usage error).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from model.data.phantom import ReportForm

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


def report_ngrams(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint directory that gets the table.")],
    config: Annotated[
        Path,
        typer.Option(
            help="Recipe whose phantom training reports are read (its train_studies, "
            "phantom_seed and phantom_reports), e.g. model/configs/dcd-b8.json."
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

    seed, studies, form = recipe_training_set(config)
    try:
        read_manifest(checkpoint)
        tokenizer = Tokenizer.load(checkpoint)
        texts = (r.report_text for r in phantom_records(seed, studies, "train", form))
        ngrams = ReportNgrams.of_texts(texts, tokenizer, order or ORDER)
        add_report_ngrams(checkpoint, ngrams)
    except (CheckpointError, TokenizerError, ReportNgramsError) as err:
        raise fail(str(err)) from err
    typer.echo(f"{len(ngrams.keys)} report {ngrams.order}-grams written to {checkpoint}")


def recipe_training_set(config: Path) -> tuple[int, int, ReportForm]:
    """(phantom seed, training studies, report form) of any stage's recipe JSON."""
    from model.config import ConfigError, check_report_form

    try:
        recipe = json.loads(config.read_text())
        seed, studies = int(recipe.get("phantom_seed", 0)), int(recipe["train_studies"])
        form = recipe.get("phantom_reports", "mixed")
        check_report_form(form)
    except (OSError, json.JSONDecodeError) as err:
        raise fail(f"cannot read the recipe {config}: {err}") from err
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise fail(f"recipe {config} does not say which studies it trained on: {err}") from err
    return seed, studies, form
