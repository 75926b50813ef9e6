"""Trust signals: calibration, the out-of-distribution gate, consistency flags, critical findings.

The fits run on synthetic numbers whose answer is known; the signals of a draft run on the
shipped checkpoints and their ``trust.json``, on a phantom study read through DICOM as served.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import dicom
import model
from clinical_eval import label
from clinical_eval.observations import OBSERVATIONS
from model.checkpoint import CheckpointError, load_checkpoint
from model.data.phantom import iter_cases, write_dicom
from model.trust_fit import critical_thresholds, fit_calibration, fit_ood
from model.trust_stats import (
    TRUST_FILE,
    CriticalPolicy,
    TrustStatistics,
    TrustStatisticsError,
)

pytestmark = pytest.mark.unit
N = len(OBSERVATIONS)


def shipped_statistics() -> TrustStatistics:
    statistics = load_checkpoint(model.CHECKPOINTS / "dcd-b4").trust
    assert statistics is not None, "dcd-b4 ships a trust.json (echocxr fit-trust)"
    return statistics


def test_calibration_recovers_the_scale_and_bias_that_made_the_labels() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (20_000, N))
    true_scale, true_bias = 0.5, -1.0
    p = 1 / (1 + np.exp(-(true_scale * logits + true_bias)))
    positive = rng.random((20_000, N)) < p
    fitted = fit_calibration(logits, positive)
    assert np.allclose(fitted.scale, true_scale, atol=0.05)
    assert np.allclose(fitted.bias, true_bias, atol=0.1)
    temperature = fit_calibration(logits, positive, bias=False)
    assert np.all(temperature.bias == 0.0)


def test_the_ood_threshold_flags_its_quantile_and_far_points() -> None:
    rng = np.random.default_rng(1)
    covariance = np.diag(np.linspace(0.1, 5.0, 64))
    draw = lambda n: rng.multivariate_normal(np.zeros(64), covariance, n)  # noqa: E731
    ood = fit_ood(draw(4000), draw(2000), components=16)
    fresh = ood.score(draw(4000))
    assert 0.003 < (fresh > ood.threshold).mean() < 0.03
    shifted = draw(200) + 3.0  # every feature moved by under 1.4 of its largest deviation
    assert (ood.score(shifted) > ood.threshold).all()


def test_critical_thresholds_keep_the_asked_sensitivity_on_the_positives() -> None:
    rng = np.random.default_rng(2)
    positive = rng.random((1000, N)) < 0.2
    probabilities = np.clip(0.3 * positive + rng.random((1000, N)) * 0.7, 0, 1)
    thresholds = critical_thresholds(probabilities, positive, sensitivity=0.9)
    for index, name in enumerate(OBSERVATIONS):
        caught = probabilities[positive[:, index], index] >= thresholds[name]
        assert caught.mean() >= 0.9


def test_a_critical_policy_refuses_what_is_not_an_observation() -> None:
    with pytest.raises(TrustStatisticsError, match="Pneumothrax"):
        CriticalPolicy(("Pneumothrax",))
    with pytest.raises(TrustStatisticsError, match="probability"):
        CriticalPolicy(("Pneumothorax",), {"Pneumothorax": 1.5})


def test_the_quick_start_contradiction_is_flagged() -> None:
    """ "The heart is not widened." then "IMPRESSION: Cardiomegaly." for a normal study."""
    statistics = shipped_statistics()
    findings, impression = label(
        ["The heart is not widened. The lungs are clear.", "Cardiomegaly."]
    )
    probabilities = {name: 0.5 for name in OBSERVATIONS}
    flags = statistics.consistency(probabilities, findings, impression)
    assert [(f.observation, f.kind) for f in flags] == [("Cardiomegaly", "sections")]
    assert "negated in the findings and asserted in the impression" in flags[0].detail


def test_text_against_the_head_is_flagged_both_ways() -> None:
    statistics = shipped_statistics()
    probabilities = {name: 0.5 for name in OBSERVATIONS}
    probabilities["Pleural Effusion"] = 0.01
    probabilities["Cardiomegaly"] = 0.99
    findings, impression = label(
        ["Small left pleural effusion. The heart is not enlarged.", "Pleural effusion."]
    )
    kinds = {
        (f.observation, f.kind) for f in statistics.consistency(probabilities, findings, impression)
    }
    assert kinds == {("Pleural Effusion", "unsupported"), ("Cardiomegaly", "overlooked")}


def test_a_draft_carries_its_trust_signals(tmp_path: Path) -> None:
    case = next(iter(iter_cases(0, 1, split="test")))
    path = write_dicom(case, tmp_path / "study.dcm", downscale=4)
    image = dicom.to_model_input(dicom.read_study(path).frontal_images[0], 128)
    generator = model.load(critical=CriticalPolicy(("Pneumothorax",), {"Pneumothorax": 0.0}))
    report = generator.generate([image])[0]
    assert report.trust is not None
    trust = report.trust
    assert set(trust.finding_probabilities) == set(OBSERVATIONS)
    assert all(0.0 <= p <= 1.0 for p in trust.finding_probabilities.values())
    assert not trust.out_of_distribution  # a phantom chest is what the model was trained on
    assert trust.critical_findings == ["Pneumothorax"]  # threshold 0 given by the caller
    assert report.to_dict()["trust"]["critical_findings"] == ["Pneumothorax"]
    blank = generator.generate([np.full((256, 256), 0.5, dtype=np.float32)])[0]
    assert blank.trust is not None and blank.trust.out_of_distribution


def test_statistics_of_other_weights_are_refused_and_none_means_no_signals(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "dcd-b4"
    shutil.copytree(model.CHECKPOINTS / "dcd-b4", copy)
    document = json.loads((copy / TRUST_FILE).read_text())
    document["weights_sha256"] = "0" * 64
    (copy / TRUST_FILE).write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="fit-trust"):
        load_checkpoint(copy)
    (copy / TRUST_FILE).unlink()
    report = model.load(copy).generate([np.full((128, 128), 0.5, dtype=np.float32)], label=False)
    assert report[0].trust is None


def test_trust_json_round_trips() -> None:
    statistics = shipped_statistics()
    again = TrustStatistics.from_json(json.loads(json.dumps(statistics.to_json())))
    features = np.ones((1, statistics.ood.mean.size))
    assert again.ood.score(features) == pytest.approx(statistics.ood.score(features))
    assert again.critical_thresholds == statistics.critical_thresholds
