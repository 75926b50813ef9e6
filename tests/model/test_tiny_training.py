"""The three training stages compute today exactly what they computed before issue 28's refactor.

The expected weight digests and losses in ``tests/model/data/tiny_training.json`` were first
written by ``tests/model/tiny_training.py`` on commit 4f9c863, before the rejected training options
were removed and ``distill.py`` was split. They were re-recorded once, when the render caches began
reading the phantom through DICOM (issue 30), by training code that had just passed against the
first recording and did not change in between: only the images differ; and again when ``ar-tiny``
was retrained through DICOM (RAD starts from it), with weight norms in place of digests, whose
float bits differ between CPU models. The runs are a few steps
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
        found, recorded = trained(), json.loads(FIXTURE.read_text())
        assert sorted(found) == sorted(recorded)
        for stage, expected in recorded.items():
            assert found[stage]["losses"] == expected["losses"], stage
            # a changed step moves the norm far more than float bits that differ between CPUs
            assert found[stage]["weights_norm"] == pytest.approx(expected["weights_norm"], rel=1e-6)
    finally:
        torch.set_num_threads(threads)
