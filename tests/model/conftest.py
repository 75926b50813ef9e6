"""Fixtures for the model tests: a tiny recipe and synthetic render caches.

The synthetic studies are deliberately simple (a bright square on the left, on the right, or
absent) so that a model trained for a few dozen steps on CPU must read the image to get the side
right; the phantom generator is exercised by the integration tests.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import TextConfig, TrainConfig, VisionConfig, VLMConfig
from model.data.datasets import StudyRecord, write_cache
from model.data.qa import questions_for

SIDES = ("left", "right", "none")

# one intra-op thread: on the shared 2-core machine two OpenMP threads per process thrash
# (a training step measured 14 s with two threads, 5.5 s with one, under a load of ~5)
torch.set_num_threads(1)


def synthetic_study(index: int, size: int = 32) -> tuple[np.ndarray, StudyRecord]:
    """A study whose only finding is a bright square whose side the report names."""
    side = SIDES[index % 3]
    image = np.full((size, size), 0.2, dtype=np.float32)
    if side != "none":
        columns = slice(2, size // 2 - 2) if side == "left" else slice(size // 2 + 2, size - 2)
        image[size // 4 : 3 * size // 4, columns] = 0.9
    labels: dict[str, int | None] = {
        "No Finding": int(side == "none"),
        "Lung Opacity": int(side != "none"),
    }
    findings = "The lungs are clear." if side == "none" else f"Opacity in the {side} lung."
    impression = "No acute disease." if side == "none" else f"{side.capitalize()} opacity."
    finding = [{"kind": "opacity", "laterality": side}] if side != "none" else []
    record = StudyRecord(f"s{index}", findings, impression, labels, questions_for(labels, finding))
    return image, record


def pid_of_a_finished_process() -> int:
    """A pid no process runs under now: what a writer killed mid-write leaves in its temp name."""
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


def tiny_model_config(image_size: int = 32) -> VLMConfig:
    llama = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "tie_word_embeddings": True,
    }
    return VLMConfig(
        vision=VisionConfig(channels=(16, 32), grid=4, finding_tokens=False),
        text=TextConfig(llama=llama),
        image_size=image_size,
        max_response_tokens=48,
    )


@pytest.fixture(scope="session")
def synthetic_caches(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("caches")
    train = write_cache(root / "train", (synthetic_study(i) for i in range(48)))
    val = write_cache(root / "val", (synthetic_study(i) for i in range(1000, 1012)))
    return train, val


def tiny_train_config(epochs: int, warmup_steps: int, eval_every: int) -> TrainConfig:
    """48 synthetic studies in batches of 8: 6 steps per epoch."""
    return TrainConfig(
        model=tiny_model_config(),
        train_studies=48,
        val_studies=12,
        epochs=epochs,
        batch_size=8,
        lr=3e-3,
        warmup_steps=warmup_steps,
        vocab_size=300,
        eval_every=eval_every,
        label_loss_weight=0.0,  # the shipped recipe's finding-token terms need finding tokens
        finding_forcing=0.0,
    )


@pytest.fixture()
def tiny_recipe() -> TrainConfig:
    """Two epochs with a snapshot every 4 steps, for the resume test."""
    return tiny_train_config(epochs=2, warmup_steps=2, eval_every=4)


@pytest.fixture(scope="session")
def trained_checkpoint(
    tmp_path_factory: pytest.TempPathFactory, synthetic_caches: tuple[Path, Path]
) -> Path:
    """A tiny model trained for 150 steps (~8 s) until it names the side of the square."""
    from model.train import Trainer

    recipe = tiny_train_config(epochs=25, warmup_steps=5, eval_every=1000)
    checkpoint = Trainer(recipe, tmp_path_factory.mktemp("run"), 0, synthetic_caches).fit()
    assert checkpoint is not None
    return checkpoint
