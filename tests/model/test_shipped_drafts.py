"""The shipped checkpoints write today exactly the drafts recorded for them.

The expected texts in ``tests/model/data/shipped_drafts.json`` were not produced by the code
under test: ``tests/model/shipped_drafts.py`` wrote them running on commit 4f9c863, before the
model code was pruned, split and re-wired. Issue 30 re-recorded the ``cache`` path
(``cache_sha256``, ``cache_batch``), when the render caches began to read phantom studies through
DICOM, and then the runs of ``ar-tiny`` when that checkpoint was retrained through DICOM, both
times on code that still wrote the earlier record; the other checkpoints' serving drafts are
still those of 4f9c863. Every byte of every draft (both input paths, batched and one study at a
time), the assistant's answers, the model inputs and the provenance a draft records must match.

Greedy decoding on a CPU is deterministic for a given machine and thread count, which the
recorder fixes to one. Model inputs are compared at 8 bits: as float32 they differ in their last
bits between CPU models, while the drafts recorded on another VM type matched here to the byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from tests.model.shipped_drafts import FIXTURE, drafts


@pytest.fixture(scope="module")
def written() -> Iterator[dict[str, Any]]:
    threads = torch.get_num_threads()
    try:
        yield drafts()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    return dict(json.loads(FIXTURE.read_text()))


def test_model_inputs_are_those_the_checkpoints_saw(
    written: dict[str, Any], recorded: dict[str, Any]
) -> None:
    assert written["inputs"] == recorded["inputs"]


def test_every_shipped_run_writes_the_recorded_drafts(
    written: dict[str, Any], recorded: dict[str, Any]
) -> None:
    assert sorted(written["runs"]) == sorted(recorded["runs"])
    for key, expected in recorded["runs"].items():
        assert written["runs"][key] == expected, key


def test_the_render_cache_drafts_what_serving_drafts(written: dict[str, Any]) -> None:
    """Training and the bench read the studies through DICOM, as the product does (issue 30)."""
    for key, run in written["runs"].items():
        assert run["cache_batch"] == run["serving_batch"], key
