"""The three training stages for a few steps each, and the weights they end with.

``tests/model/test_tiny_training.py`` runs the same few steps today and compares them with
``tests/model/data/tiny_training.json``. That file was written by this module run on the code of
commit 4f9c863, before issue 28 pruned the rejected options from the training code and split
it, so it records what the training code computed then: two stage-1 steps of the shipped AR
recipe from scratch; three RAD steps from the shipped AR model; and from the shipped RAD
teacher a DCD run with the shipped recipe's settings (teacher rolled out left to right, length
buckets, a student-prefix round written under the report n-grams) and the factorized baseline
on the same rollouts; each on a handful of phantom studies. Equal losses and weight norms mean
the refactor left every training step unchanged. The runs that start from a shipped checkpoint
were re-recorded, with the training code unchanged, when it was rebuilt through DICOM (issue 30:
the RAD steps with `ar-tiny`, the DCD and factorized steps with `rad-b8`). Weights are compared
by their norm, not their bytes: their last float bits differ between CPU models (an AMD VM
against the Intel one that first recorded them), the losses do not.

Run (only to record a new fixture after a deliberate change, saying why in the commit):
``.venv/bin/python -m tests.model.tiny_training``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

FIXTURE = Path(__file__).parent / "data" / "tiny_training.json"


def losses(history: list[dict[str, Any]]) -> list[float]:
    """The losses of a run's history (stage 1 logs its training loss beside a validation one)."""
    return [
        float(entry["train_loss"] if "train_loss" in entry else entry["loss"]) for entry in history
    ]


def weights_norm(directory: Path) -> float:
    """The L2 norm of every weight a checkpoint stores, summed in float64."""
    from model.checkpoint import load_checkpoint

    weights = load_checkpoint(directory).vlm.state_dict().values()
    return float(sum(w.double().pow(2).sum() for w in weights) ** 0.5)


def trained() -> dict[str, Any]:
    """The weight norms and loss histories of the four short runs."""
    from model import CHECKPOINTS
    from model.diffusion import RADConfig, train_rad
    from model.distill import DCDConfig, distill
    from model.train import run

    torch.set_num_threads(1)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        root, cache = Path(scratch), Path(scratch) / "cache"
        recipe = json.loads(Path("model/configs/ar-tiny.json").read_text())
        recipe |= {"train_studies": 16, "val_studies": 4, "epochs": 1, "batch_size": 8}
        (root / "ar.json").write_text(json.dumps(recipe))
        ar = run(root / "ar.json", root / "ar", 0, cache)
        rad = RADConfig(
            init_checkpoint=str(CHECKPOINTS / "ar-tiny"),
            block_size=8,
            steps=3,
            lr=3e-4,
            batch_size=4,
            train_studies=8,
            eval_every=2,
            length_buckets=2,
        )
        teacher = train_rad(rad, root / "rad", cache)
        assert teacher is not None
        common: dict[str, Any] = {
            "teacher_checkpoint": str(CHECKPOINTS / "rad-b8"),
            "studies": 6,
            "teacher_order": "left-to-right",
            "batch_size": 3,
            "epochs": 1,
            "train_studies": 8,
            "length_buckets": 2,
        }
        dcd = DCDConfig(
            **common,
            student_prefix_studies=4,
            student_prefix_epochs=1,
            student_prefix_ngrams=True,
        )
        student = distill(dcd, root / "dcd", cache)
        factorized = DCDConfig(
            **common,
            target="factorized",
            step_weighting=False,
            trajectories=str(root / "dcd" / "trajectories"),
            student_prefix_studies=0,
        )
        baseline = distill(factorized, root / "factorized", cache)
        for name, directory, key in (
            ("ar", ar, "history"),
            ("rad", teacher, "rad_history"),
            ("dcd", student, "dcd_history"),
            ("factorized", baseline, "dcd_history"),
        ):
            assert directory is not None
            metrics = json.loads((directory / "metrics.json").read_text())
            result[name] = {
                "weights_norm": weights_norm(directory),
                "losses": losses(metrics[key]),
            }
    return result


if __name__ == "__main__":
    from tests.model.shipped_drafts import record

    record(FIXTURE, trained())
