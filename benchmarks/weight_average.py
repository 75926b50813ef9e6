"""Average the weights of checkpoints of one architecture (a "model soup").

Run: ``.venv/bin/python benchmarks/weight_average.py OUT CHECKPOINT CHECKPOINT [...]``.
Writes the checkpoint ``OUT`` with the first checkpoint's tokenizer, configuration and report
n-grams. Students distilled from the same teacher start from the same weights, so their average
can land in the same basin and beat each of them; ``benchmarks/results/student_prefix_ngrams.md``
measures it on four stage-3 runs (it did not beat the best one).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from model.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint, save_checkpoint


def averaged_state(checkpoints: list[LoadedCheckpoint]) -> dict[str, torch.Tensor]:
    """The mean of every floating-point tensor; integer buffers must agree."""
    states = [checkpoint.vlm.state_dict() for checkpoint in checkpoints]
    if any(state.keys() != states[0].keys() for state in states):
        raise CheckpointError("the checkpoints have different tensors; average one architecture")
    averaged = {}
    for name, first in states[0].items():
        tensors = [state[name] for state in states]
        if any(tensor.shape != first.shape for tensor in tensors):
            raise CheckpointError(f"{name} has different shapes in the checkpoints")
        if first.is_floating_point():
            averaged[name] = torch.stack([t.float() for t in tensors]).mean(0).to(first.dtype)
        elif all(torch.equal(tensor, first) for tensor in tensors):
            averaged[name] = first
        else:
            raise CheckpointError(f"{name} is an integer buffer that differs between checkpoints")
    return averaged


def average_checkpoints(out: Path, directories: list[Path]) -> Path:
    checkpoints = [load_checkpoint(directory) for directory in directories]
    base = checkpoints[0]
    if any(c.manifest["model"] != base.manifest["model"] for c in checkpoints):
        raise CheckpointError("the checkpoints' model configurations (stage, block size) differ")
    base.vlm.load_state_dict(averaged_state(checkpoints))
    return save_checkpoint(
        out,
        base.vlm,
        base.tokenizer,
        model_id=f"{base.model_id}-average-of-{len(checkpoints)}",
        data_sha256=base.manifest["training_data_sha256"],
        metrics={"averaged": [str(directory) for directory in directories]},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("checkpoints", type=Path, nargs="+")
    args = parser.parse_args()
    print(average_checkpoints(args.out, args.checkpoints))


if __name__ == "__main__":
    main()
