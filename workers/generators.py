"""Which model drafts (checkpoint, engine, options), and the loaded models, once per process.

A deployment names its drafting ``DraftProfile`` in settings; the API reads the profile to key
jobs (``draft_key``) without loading weights, and a worker process loads each model once, on its
first task, so CUDA is touched only in the process that drafts (never in a forking parent).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.config import Settings

if TYPE_CHECKING:
    from model.report import ReportGenerator

logger = logging.getLogger(__name__)
ASSISTANT_ENGINE = "ar"  # the assistant is the stage-1 model, whatever drafts the reports


@dataclass(frozen=True)
class DraftProfile:
    """A checkpoint, an engine and its options: what decides the text of a draft."""

    checkpoint: Path
    engine: str
    options_json: str  # every option, defaults included, as sorted JSON
    weights_sha256: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(json.loads(self.options_json))

    def draft_key(self, content_sha256: str) -> str:
        """One key per (study content, weights, engine, options): the job's identity."""
        parts = [content_sha256, self.weights_sha256, self.engine, self.options_json]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def resolve_profile(settings: Settings) -> DraftProfile:
    """The profile ``settings`` name, checked without loading weights.

    Raises ``model.checkpoint.CheckpointError`` or ``model.decoding.EngineError`` naming what to
    fix, so that a misconfigured service says so at start, not at its first draft.
    """
    import model
    from model.checkpoint import CheckpointError, read_manifest
    from model.decoding import get_engine, parse_engine_options

    options = parse_engine_options(settings.engine_options.split())
    checkpoint = settings.checkpoint
    engine = settings.engine
    if checkpoint is None:
        engine = engine or model.DEFAULT_ENGINE
        checkpoint = model.shipped_checkpoint(engine)
        if checkpoint is None:
            raise CheckpointError(
                f"no checkpoint is shipped for engine {engine!r}; set ECHOCXR_CHECKPOINT"
            )
    manifest = read_manifest(checkpoint)
    engine = engine or model.ENGINE_FOR_STAGE[str(manifest["stage"])]
    resolved = get_engine(engine, **options).options
    return DraftProfile(
        checkpoint=Path(checkpoint).resolve(),
        engine=engine,
        options_json=json.dumps(resolved, sort_keys=True),
        weights_sha256=str(manifest["weights"]["sha256"]),
    )


def set_torch_threads(settings: Settings) -> None:
    """Give this drafting process its share of the cores (``Settings.torch_threads``).

    Called once per process that drafts, before its first draft: each Celery pool process, a
    worker without a pool (``--pool solo``; both in ``workers.app``) and the embedded API.
    Torch applies the count to each thread on that thread's first operation, so the threads
    that draft later (the embedded pool's) run with it. Unset, torch is left alone (and not
    imported: an API that only queues never needs it).
    """
    if settings.torch_threads is None:
        return
    import torch

    torch.set_num_threads(settings.torch_threads)
    logger.info("torch threads: %d (ECHOCXR_TORCH_THREADS)", torch.get_num_threads())


_loading = threading.Lock()  # the embedded pool's threads must not load one model twice


def report_generator(profile: DraftProfile, settings: Settings) -> ReportGenerator:
    """The drafting model of ``profile``, loaded on first use and kept for the process, on the
    settings' device and batch size, marking critical the observations of
    ``Settings.critical_findings``.

    Raises ``model.trust_stats.TrustStatisticsError`` for a critical observation that is no
    CheXpert observation.
    """
    with _loading:
        return _load(
            profile.checkpoint,
            profile.engine,
            profile.options_json,
            settings.device,
            settings.draft_batch,
            settings.critical_observations,
        )


def shipped_generator(engine: str, device: str = "cpu", batch_size: int = 1) -> ReportGenerator:
    """The checkpoint shipped for ``engine``, loaded on first use and kept for the process."""
    import model

    with _loading:
        return _load(model.SHIPPED_CHECKPOINTS[engine], engine, "{}", device, batch_size)


def assistant_generator(device: str = "cpu") -> ReportGenerator:
    """The shipped stage-1 model that answers questions about a study."""
    return shipped_generator(ASSISTANT_ENGINE, device)


@cache
def _load(
    checkpoint: Path,
    engine: str,
    options_json: str,
    device: str,
    batch_size: int,
    critical: tuple[str, ...] | None = None,
) -> ReportGenerator:
    """``critical`` None: the checkpoint's default policy (the assistant never drafts)."""
    import model
    from model.trust_stats import CriticalPolicy

    options = json.loads(options_json)
    return model.load(
        checkpoint,
        engine,
        device,
        batch_size=batch_size,
        engine_options=options,
        critical=None if critical is None else CriticalPolicy(critical),
    )
