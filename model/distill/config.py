"""The stage-3 recipe: what ``model/configs/dcd-*.json`` may set; its defaults are ``dcd-b8``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.blocks import DiffusionError
from model.diffusion import check_length_buckets, read_recipe
from model.sampling import COMMIT_ORDERS

TARGETS = ("conditional", "factorized")


@dataclass
class DCDConfig:
    """A distillation recipe (``model/configs/dcd-*.json``).

    The defaults are the shipped ``dcd-b8.json``; ``dcd-b4.json`` differs only in its teacher,
    the factorized baselines in their target, weighting, rollouts and round.

    Parameters
    ----------
    teacher_checkpoint : str
        The stage-2 (RAD) checkpoint; its block size is the student's.
    target : {"conditional", "factorized"}
        DCD's commit-time targets, or the factorized baseline's: the step-1 marginals of the
        fully masked block, one noisy state.
    studies : int
        Training studies the teacher rolls out (phase 1).
    teacher_steps : int or None
        S of the teacher sampler; None means S = B.
    threshold : float
        The teacher's confidence threshold (tau) in the "confidence" order; 0.85 as ECHO's code
        (``docs/decisions/008-teacher-threshold.md``).
    teacher_order : {"confidence", "left-to-right"}
        Which masked positions each teacher step commits (:class:`model.sampling.MultiStepEngine`,
        ``order``); left to right, the teacher misses fewer findings
        (``docs/decisions/007-teacher-order.md``).
    top_k : int
        Stored probabilities per position.
    phantom_seed, train_studies : the phantom training split (that of stage 1).
    epochs, batch_size, lr : phase-2 schedule (AdamW, constant after warm-up);
        ``docs/decisions/010-dcd-schedule.md``.
    eos_weight : float
        lambda of the cross-entropy on the ``<eos>`` position.
    step_weighting : bool
        Weight positions by their commit step (False: uniform).
    trajectories : str or None
        Directory of the phase-1 shards; None means ``OUT/trajectories``. The factorized baseline
        points at the DCD run's shards, so both train on the same rollouts and phase 1 runs once.
    student_prefix_studies : int
        Not in ECHO: after the ``epochs`` above, the student writes this many training reports
        with its own one-step engine, the teacher writes every block again conditioned on the
        student's previous blocks (``OUT/student-prefix``), and the student trains on those
        targets too (0: no round). Free-running, the student conditions on its own blocks, which
        phase 2 never shows it (imitation learning's DAgger);
        ``docs/decisions/009-student-prefix-round.md``.
    student_prefix_epochs : int
        Epochs of the round, over the phase-1 shards and the round's together.
    student_prefix_ngrams : bool
        The student writes the round's reports under its training reports' n-grams, as the
        one-step engine writes by default (:mod:`model.report_ngrams`), instead of by argmax.
    length_buckets : int
        Phase 1 and the round cut their studies into groups of ``length_buckets`` shards and sort
        each group by reference report length before cutting it into shards (1: study order):
        a rollout batch runs until its longest report ends and a student step pads every row
        to the longest trajectory of its shard (``docs/decisions/005-length-buckets.md``).
        Shard order stays random in every epoch.
    """

    teacher_checkpoint: str = "model/checkpoints/rad-b8"
    target: str = "conditional"
    studies: int = 2048
    teacher_steps: int | None = None
    threshold: float = 0.85
    teacher_order: str = "left-to-right"
    top_k: int = 32
    phantom_seed: int = 0
    train_studies: int = 4000
    epochs: int = 6
    batch_size: int = 16
    lr: float = 2e-4
    eos_weight: float = 1.0
    step_weighting: bool = True
    trajectories: str | None = None
    student_prefix_studies: int = 1024
    student_prefix_epochs: int = 1
    student_prefix_ngrams: bool = True
    length_buckets: int = 8

    def __post_init__(self) -> None:
        check_length_buckets(self.length_buckets)
        if self.target not in TARGETS:
            raise DiffusionError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.teacher_order not in COMMIT_ORDERS:
            raise DiffusionError(
                f"teacher_order must be one of {COMMIT_ORDERS}, got {self.teacher_order!r}"
            )

    @classmethod
    def from_file(cls, path: Path) -> DCDConfig:
        return read_recipe(cls, path, "DCD")
