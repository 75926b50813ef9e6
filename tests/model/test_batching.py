"""Length-bucketed batches of stages 2 and 3: less padding, same chance for every study."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

from model.blocks import DiffusionError
from model.data.datasets import StudyDataset, StudyRecord, write_cache
from model.diffusion import RADConfig, rad_batch
from model.distill import DCDConfig
from model.distill.rollouts import claim_directory, rollout_order, rollout_settings
from model.tokenizer import Tokenizer
from model.train import length_sorted_batches

N_STUDIES = 48


def study_of_length(index: int) -> tuple[np.ndarray, StudyRecord]:
    """Study ``index`` has ``index + 1`` words of findings, so its report length names it."""
    findings = " ".join(["opacity"] * (index + 1)) + "."
    record = StudyRecord(f"s{index}", findings, "No acute disease.", {"No Finding": 1})
    return np.zeros((32, 32), dtype=np.float32), record


def rad_recipe(**settings: int) -> RADConfig:
    """A RAD recipe whose run is never started: only its batching settings are read."""
    return RADConfig(init_checkpoint="unused", block_size=8, steps=1, lr=1e-4, **settings)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> StudyDataset:
    cache = write_cache(
        tmp_path_factory.mktemp("lengths"), (study_of_length(i) for i in range(N_STUDIES))
    )
    return StudyDataset(cache, qa_per_study=0)


@pytest.fixture(scope="module")
def tokenizer(dataset: StudyDataset) -> Tokenizer:
    return Tokenizer.train([r.report_text for r in dataset.records], vocab_size=300)


def report_length(dataset: StudyDataset, tokenizer: Tokenizer, study: int) -> int:
    return len(tokenizer.response(dataset.records[study].report_text))


def batch_studies(
    dataset: StudyDataset, tokenizer: Tokenizer, config: RADConfig, step: int
) -> list[int]:
    """The studies of a step's batch, read back from their report lengths."""
    batch = rad_batch(dataset, tokenizer, config, 200, seed=0, step=step)
    by_length = {report_length(dataset, tokenizer, i): i for i in range(N_STUDIES)}
    return [by_length[int(n)] for n in batch.groups[0].response_mask.sum(1)]


def test_length_sorted_batches_cut_a_sorted_permutation(
    dataset: StudyDataset, tokenizer: Tokenizer
) -> None:
    pool = [int(i) for i in np.random.default_rng(0).permutation(40)]
    batches = length_sorted_batches(pool, dataset.records, tokenizer, 16)
    assert [len(b) for b in batches] == [16, 16, 8]
    flat = [i for b in batches for i in b]
    assert sorted(flat) == sorted(pool)
    lengths = [report_length(dataset, tokenizer, i) for i in flat]
    assert lengths == sorted(lengths)


def test_bucketed_batches_pad_less(dataset: StudyDataset, tokenizer: Tokenizer) -> None:
    def mean_spread(buckets: int) -> float:
        config = rad_recipe(batch_size=4, length_buckets=buckets)
        spreads = [np.ptp(batch_studies(dataset, tokenizer, config, s)) for s in range(40)]
        return float(np.mean(spreads))

    # a uniform batch of 4 among lengths 1..48 spans ~29 words; a cut of a sorted pool of 24
    # spans ~6
    assert mean_spread(6) < 0.4 * mean_spread(1)


def test_bucketed_batches_draw_every_study_alike(
    dataset: StudyDataset, tokenizer: Tokenizer
) -> None:
    config = rad_recipe(batch_size=4, length_buckets=3)
    steps = 600
    counts = collections.Counter(
        i for s in range(steps) for i in batch_studies(dataset, tokenizer, config, s)
    )
    expected = steps * config.batch_size / N_STUDIES  # 50
    # always taking the shortest cut, say, would leave the long reports at 0
    assert len(counts) == N_STUDIES
    assert expected * 0.55 < min(counts.values()) <= max(counts.values()) < expected * 1.5


def test_a_step_draws_the_same_batch_again(dataset: StudyDataset, tokenizer: Tokenizer) -> None:
    config = rad_recipe(batch_size=4, length_buckets=4)
    assert batch_studies(dataset, tokenizer, config, 7) == batch_studies(
        dataset, tokenizer, config, 7
    )
    assert batch_studies(dataset, tokenizer, config, 7) != batch_studies(
        dataset, tokenizer, config, 8
    )


def test_rollout_order_sorts_within_groups_of_shards(
    dataset: StudyDataset, tokenizer: Tokenizer
) -> None:
    studies = [int(i) for i in np.random.default_rng(1).permutation(30)]
    config = DCDConfig(batch_size=4, length_buckets=3)
    order = rollout_order(studies, dataset, tokenizer, config)
    for first in range(0, 30, 12):  # groups of 3 shards keep their studies, sorted by length
        group = order[first : first + 12]
        assert sorted(group) == sorted(studies[first : first + 12])
        lengths = [report_length(dataset, tokenizer, i) for i in group]
        assert lengths == sorted(lengths)
    unsorted = DCDConfig(batch_size=4, length_buckets=1)
    assert rollout_order(studies, dataset, tokenizer, unsorted) == studies


def test_shards_of_another_bucketing_are_not_reused(tmp_path: Path) -> None:
    claim_directory(tmp_path, rollout_settings(DCDConfig(length_buckets=1), "0" * 64))
    with pytest.raises(DiffusionError, match="other length_buckets"):
        claim_directory(tmp_path, rollout_settings(DCDConfig(length_buckets=8), "0" * 64))


@pytest.mark.parametrize("recipe", [rad_recipe, DCDConfig])
def test_length_buckets_below_one_are_refused(recipe: type) -> None:
    with pytest.raises(DiffusionError, match="length_buckets must be >= 1, got 0"):
        recipe(length_buckets=0)
