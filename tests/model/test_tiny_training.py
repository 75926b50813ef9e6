"""The three training stages compute today exactly what they computed before issue 28's refactor.

The expected weight digests and losses in ``tests/model/data/tiny_training.json`` are
trustworthy because they were not produced by the code under test: ``tests/model/tiny_training.py``
wrote them running on commit 4f9c863, before the rejected training options were removed and
``distill.py`` was split, and the file has not been rewritten since. The runs are a few steps
each (stage 1 of the shipped AR recipe from scratch; RAD from ``ar-tiny``; DCD with the shipped
recipe's settings and the factorized baseline from ``rad-b8``), on one thread, as recorded.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.model.tiny_training import FIXTURE, trained

pytestmark = pytest.mark.unit


def test_ar_rad_dcd_and_factorized_steps_end_with_the_recorded_weights() -> None:
    threads = torch.get_num_threads()
    try:
        assert trained() == json.loads(FIXTURE.read_text())
    finally:
        torch.set_num_threads(threads)
