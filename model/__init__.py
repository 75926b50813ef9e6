"""EchoCXR model package: ``load(checkpoint_dir)`` returns a ``ReportGenerator``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.report import ReportGenerator

DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "ar-tiny"


def load(
    checkpoint_dir: str | Path = DEFAULT_CHECKPOINT,
    engine: str = "ar",
    device: str = "cpu",
    batch_size: int = 16,
    **engine_options: Any,
) -> ReportGenerator:
    """Load a checkpoint directory and wrap it with a decoding engine.

    Raises ``model.checkpoint.CheckpointError`` on a missing or corrupt checkpoint and
    ``model.decoding.EngineError`` on an unknown engine.
    """
    from model.checkpoint import load_checkpoint
    from model.decoding import get_engine
    from model.report import ReportGenerator

    decoder = get_engine(engine, **engine_options)
    checkpoint = load_checkpoint(Path(checkpoint_dir), device=device)
    return ReportGenerator(checkpoint, decoder, batch_size=batch_size)


__all__ = ["DEFAULT_CHECKPOINT", "load"]
