"""Render caches written by several processes at once, or left behind by an interrupted one."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.data.datasets import StudyDataset, StudyRecord, write_cache
from tests.model.conftest import pid_of_a_finished_process, synthetic_study

pytestmark = pytest.mark.unit
STUDIES = 6


def render_slowly(directory: str, barrier: Any) -> None:
    """Write the cache once every process has started its own render."""

    def studies() -> Iterator[tuple[np.ndarray, StudyRecord]]:
        barrier.wait(timeout=60)
        for index in range(STUDIES):
            time.sleep(0.05)
            yield synthetic_study(index)

    write_cache(Path(directory), studies())


def test_two_processes_rendering_the_same_cache_both_get_it(tmp_path: Path) -> None:
    """Two training runs started together used to share one temp directory: one of them
    failed with FileNotFoundError on the other's half-written images."""
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2)
    cache = tmp_path / "phantom-train"
    workers = [spawn.Process(target=render_slowly, args=(str(cache), barrier)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert [r.study_id for r in StudyDataset(cache).records] == [f"s{i}" for i in range(STUDIES)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phantom-train"]


def test_an_interrupted_render_is_cleared_and_a_running_one_kept(tmp_path: Path) -> None:
    abandoned = tmp_path / f"cache.partial-{pid_of_a_finished_process()}"
    running = tmp_path / "cache.partial-1"  # init's: a process that runs
    for partial in (abandoned, running):
        partial.mkdir()
    write_cache(tmp_path / "cache", (synthetic_study(i) for i in range(2)))
    assert not abandoned.exists() and running.exists()
    assert len(StudyDataset(tmp_path / "cache").records) == 2
