"""EchoCXR model package: ``load(checkpoint_dir, engine)`` returns a ``ReportGenerator``.

Shipped checkpoints live in ``model/checkpoints``: the stage-1 AR model, the stage-2 RAD model
(the multi-step teacher, B = 8) and two stage-3 DCD models that write a block in one forward
pass: ``dcd-b4``, the default, and ``dcd-b8``, faster and further from AR.
Each engine reads the checkpoint of the stage it was built for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.report import ReportGenerator
    from model.trust_stats import CriticalPolicy

CHECKPOINTS = Path(__file__).parent / "checkpoints"
AR_CHECKPOINT = CHECKPOINTS / "ar-tiny"
# `echocxr report` and the demo: one step per block on the B = 4 student, within 0.02 macro-F1
# of AR on validation studies read through DICOM (+0.016 after the rebuild of 2026-12-07;
# docs/decisions/001-one-step-default.md, 021).
DEFAULT_ENGINE = "diffusion-onestep"
# `echocxr report-archive`: AR, since reading the DICOM dominates an archive's time
# (docs/decisions/002-archive-engine.md).
DEFAULT_ARCHIVE_ENGINE = "ar"
# a checkpoint given without an engine runs with the engine its stage was trained for
ENGINE_FOR_STAGE = {"ar": "ar", "rad": "diffusion-multistep", "dcd": "diffusion-onestep"}
SHIPPED_CHECKPOINTS = {
    "ar": AR_CHECKPOINT,
    "diffusion-multistep": CHECKPOINTS / "rad-b8",
    "diffusion-onestep": CHECKPOINTS / "dcd-b4",
}


def shipped_checkpoint(engine: str) -> Path | None:
    """The shipped checkpoint an engine runs by default, or None when it is not shipped."""
    directory = SHIPPED_CHECKPOINTS.get(engine)
    return directory if directory and (directory / "config.json").is_file() else None


def load(
    checkpoint_dir: str | Path | None = None,
    engine: str | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    engine_options: dict[str, Any] | None = None,
    critical: CriticalPolicy | None = None,
) -> ReportGenerator:
    """Load a checkpoint with a decoding engine.

    With neither given: the default engine on its shipped checkpoint. With only an engine: the
    checkpoint shipped for it. With only a checkpoint: the engine of its training stage.
    ``engine_options`` go to the engine (e.g. ``{"ngram_candidates": 8}`` for one-step
    decoding) and into every report's provenance. ``critical`` names the observations that mark
    a draft critical and their thresholds (default: pneumothorax at the checkpoint's fitted one).

    Raises ``model.checkpoint.CheckpointError`` on a missing or corrupt checkpoint and
    ``model.decoding.EngineError`` on an unknown engine.
    """
    from model.checkpoint import CheckpointError, load_checkpoint
    from model.decoding import get_engine
    from model.report import ReportGenerator

    options = engine_options or {}
    if checkpoint_dir is None:
        engine = engine or DEFAULT_ENGINE
        checkpoint_dir = shipped_checkpoint(engine)
    # an unknown engine or option is named as such, before a checkpoint that is not shipped
    decoder = get_engine(engine, **options) if engine else None
    if checkpoint_dir is None:
        raise CheckpointError(
            f"no checkpoint is shipped for engine {engine!r}; pass one from `echocxr "
            "train`, `echocxr train-rad` or `echocxr distill`"
        )
    checkpoint = load_checkpoint(Path(checkpoint_dir), device=device)
    decoder = decoder or get_engine(ENGINE_FOR_STAGE[checkpoint.vlm.config.stage], **options)
    return ReportGenerator(checkpoint, decoder, batch_size=batch_size, critical=critical)


__all__ = [
    "AR_CHECKPOINT",
    "CHECKPOINTS",
    "DEFAULT_ARCHIVE_ENGINE",
    "DEFAULT_ENGINE",
    "ENGINE_FOR_STAGE",
    "SHIPPED_CHECKPOINTS",
    "load",
    "shipped_checkpoint",
]
