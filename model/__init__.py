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

CHECKPOINTS = Path(__file__).parent / "checkpoints"
AR_CHECKPOINT = CHECKPOINTS / "ar-tiny"
# The engine `echocxr report` and the demo use: one step per block on the shipped B = 4 student.
# The rule, set before these students were built: one step becomes the default once its macro-F1
# interval against AR on 2,000 validation studies lies within 0.02. The B = 4 student
# (benchmarks/results/block_sizes_from_b8.md) is the first to meet it: -0.006 [-0.015, +0.003]
# (test, read after the choice: -0.007 [-0.017, +0.004]), at 1.44x AR's speed one study at a time
# on a CPU and 3.3x fewer forwards. It trades findings: twice AR's missed pleural effusions (186
# against 86 on test), fewer missed edema and atelectasis. The B = 8 student, 2.9-4.1x faster,
# stays 0.011-0.018 below AR with intervals past 0.02, so it ships as an option
# (--checkpoint model/checkpoints/dcd-b8). ECHOCXR_ENGINE=ar restores the AR engine.
DEFAULT_ENGINE = "diffusion-onestep"
# The engine `echocxr report-archive` drafts a whole archive with, in batches: the throughput use.
# The engines alone differ 1.4-1.9x in reports per CPU-second at batch 16-128 (row_dropping.md),
# but an archive also reads each full-resolution DICOM file, ~75% of its time, and at batch 64
# one step drafted 2.58 studies/s against AR's 2.54 (archive_drafting.md): no reason there to
# give up AR's quality. The default B = 4 student writes 1.13x AR's reports per second at batch 16
# and 0.96x at 64 (block_sizes_from_b8.md). A setting of its own (ECHOCXR_ARCHIVE_ENGINE), as the
# trade differs per use.
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
    "AR_CHECKPOINT",
    "CHECKPOINTS",
    "DEFAULT_ARCHIVE_ENGINE",
    "DEFAULT_ENGINE",
    "ENGINE_FOR_STAGE",
    "SHIPPED_CHECKPOINTS",
    "load",
    "shipped_checkpoint",
]
