"""EchoCXR model package: ``load(checkpoint_dir, engine)`` returns a ``ReportGenerator``.

Shipped checkpoints live in ``model/checkpoints``: the stage-1 AR model, the stage-2 RAD model
(the multi-step teacher) and the stage-3 DCD model that writes a block in one forward pass.
Each engine reads the checkpoint of the stage it was built for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.report import ReportGenerator

CHECKPOINTS = Path(__file__).parent / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINTS / "ar-tiny"
# The engine `echocxr report` and the demo use. One-step decoding is ~4x faster at batch 1; the
# shipped student (its teacher rolled out left to right, benchmarks/results/teacher_order.md) sits
# 0.018 macro-F1 below AR on 2,000 validation studies [-0.027, -0.008] and 0.011 on 2,000 test
# studies [-0.023, -0.000]: within the 0.02 as point estimates, but both intervals say AR
# is still measurably better and reach past 0.02. On a CPU the saving is ~0.2 s per report, less
# than a reader notices, so the more accurate engine stays the default until the validation
# interval lies within 0.02 (the rule set before the student was built).
# ECHOCXR_ENGINE=diffusion-onestep selects it.
DEFAULT_ENGINE = "ar"
# The engine `echocxr report-archive` drafts a whole archive with, in batches: the throughput use.
# The engines alone differ 1.4-1.9x in reports per CPU-second at batch 16-128 (row_dropping.md),
# but an archive also reads each full-resolution DICOM file, ~75% of its time, and at batch 64
# one step drafted 2.58 studies/s against AR's 2.54 (archive_drafting.md): no reason there to
# give up AR's quality. A setting of its own (ECHOCXR_ARCHIVE_ENGINE), as the trade differs per use.
DEFAULT_ARCHIVE_ENGINE = "ar"
# a checkpoint given without an engine runs with the engine its stage was trained for
ENGINE_FOR_STAGE = {"ar": "ar", "rad": "diffusion-multistep", "dcd": "diffusion-onestep"}
SHIPPED_CHECKPOINTS = {
    "ar": DEFAULT_CHECKPOINT,
    "diffusion-multistep": CHECKPOINTS / "rad-b8",
    "diffusion-onestep": CHECKPOINTS / "dcd-b8",
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
) -> ReportGenerator:
    """Load a checkpoint with a decoding engine.

    With neither given: the default engine on its shipped checkpoint. With only an engine: the
    checkpoint shipped for it. With only a checkpoint: the engine of its training stage.
    ``engine_options`` go to the engine (e.g. ``{"ngram_candidates": 8}`` for one-step
    decoding) and into every report's provenance.

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
    return ReportGenerator(checkpoint, decoder, batch_size=batch_size)


__all__ = [
    "CHECKPOINTS",
    "DEFAULT_ARCHIVE_ENGINE",
    "DEFAULT_CHECKPOINT",
    "DEFAULT_ENGINE",
    "ENGINE_FOR_STAGE",
    "SHIPPED_CHECKPOINTS",
    "load",
    "shipped_checkpoint",
]
