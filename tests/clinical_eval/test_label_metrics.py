"""Label F1 variants against hand-computed values, and the bootstrap against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

import clinical_eval
from clinical_eval.bootstrap import bootstrap_ci, mean_of, paired_bootstrap
from clinical_eval.label_metrics import binarize, compare_systems, f1_intervals, label_matrix

pytestmark = pytest.mark.unit

NAMES = clinical_eval.OBSERVATIONS


def row(**values: int) -> dict[str, int | None]:
    labels: dict[str, int | None] = dict.fromkeys(NAMES)
    labels.update({name.replace("_", " "): v for name, v in values.items()})
    return labels


def test_uncertain_counts_as_negative_or_positive_by_variant() -> None:
    pred = [row(Edema=-1), row(Edema=1)]
    ref = [row(Edema=1), row(Edema=1)]
    scores = clinical_eval.label_f1(pred, ref)
    # unc0: Edema TP=1, FN=1 -> F1 = 2/3; unc1: both TP -> 1. The other 4 of the five never fire.
    assert scores["chexpert_rule_f1_micro5_unc0"] == pytest.approx(2 / 3)
    assert scores["chexpert_rule_f1_micro5_unc1"] == pytest.approx(1.0)
    assert scores["chexpert_rule_f1_macro5_unc0"] == pytest.approx(2 / 3 / 5)
    assert scores["chexpert_rule_f1_macro5_unc1"] == pytest.approx(1 / 5)
    assert set(scores) == {
        f"chexpert_rule_f1_{a}{s}_unc{u}"
        for a in ("micro", "macro")
        for s in (14, 5)
        for u in (0, 1)
    }


def test_sequences_in_observation_order_equal_dicts() -> None:
    truth = [[None] * 14 for _ in range(2)]
    truth[0][NAMES.index("Cardiomegaly")] = 1
    truth[1][0] = 1
    dicts = [row(Cardiomegaly=1), {**row(), "No Finding": 1}]
    assert clinical_eval.label_f1(dicts, truth) == clinical_eval.label_f1(dicts, dicts)


@pytest.mark.parametrize(
    ("pred", "ref", "message"),
    [
        ([row()], [row(), row()], "1 predicted label rows but 2"),
        ([[1] * 13], [[1] * 13], "13 labels given, expected 14"),
        ([row(Edema=2)], [row()], "'Edema' is 2"),
        ([], [], "no label rows"),
    ],
)
def test_bad_label_rows_raise_a_clear_error(pred: list, ref: list, message: str) -> None:
    with pytest.raises(clinical_eval.LabelFormatError, match=message):
        clinical_eval.label_f1(pred, ref)


def test_vectorised_bootstrap_point_estimates_match_scikit_learn() -> None:
    rng = np.random.default_rng(7)
    pred = rng.choice([1.0, 0.0, -1.0, np.nan], size=(150, 14))
    ref = rng.choice([1.0, 0.0, -1.0, np.nan], size=(150, 14))
    intervals = f1_intervals(pred, ref, uncertain_as=1, n_resamples=200)
    p, r = binarize(pred, 1), binarize(ref, 1)
    assert intervals["macro14"].value == pytest.approx(f1_score(r, p, average="macro"))
    assert intervals["micro14"].value == pytest.approx(f1_score(r, p, average="micro"))
    edema = NAMES.index("Edema")
    assert intervals["Edema"].value == pytest.approx(f1_score(r[:, edema], p[:, edema]))
    for interval in intervals.values():
        assert interval.low <= interval.value <= interval.high


def test_label_matrix_marks_blank_as_nan() -> None:
    matrix = label_matrix([row(Edema=0)])
    assert matrix[0, NAMES.index("Edema")] == 0
    assert np.isnan(matrix[0, NAMES.index("Fracture")])


def test_bootstrap_interval_of_a_mean_brackets_it_and_narrows_with_n() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.normal(size=30), rng.normal(size=3000)
    ci_small = bootstrap_ci(mean_of(small), len(small), n_resamples=500)
    ci_large = bootstrap_ci(mean_of(large), len(large), n_resamples=500)
    assert ci_small.low < small.mean() < ci_small.high
    assert (ci_large.high - ci_large.low) < (ci_small.high - ci_small.low) / 5


def test_paired_bootstrap_separates_a_real_difference_from_none() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(size=200)
    better = a + 0.1
    clear = paired_bootstrap(mean_of(a), mean_of(better), len(a), n_resamples=500)
    assert clear.delta == pytest.approx(0.1)
    assert clear.p_value < 0.01
    assert clear.low > 0
    same = paired_bootstrap(mean_of(a), mean_of(a.copy()), len(a), n_resamples=500)
    assert same.p_value == 1.0


def test_compare_systems_finds_the_better_labeller() -> None:
    rng = np.random.default_rng(3)
    truth = rng.choice([1.0, 0.0, np.nan], size=(300, 14))
    good = truth.copy()
    bad = truth.copy()
    flip = rng.uniform(size=truth.shape) < 0.4
    bad[flip] = np.where(truth[flip] == 1, 0.0, 1.0)
    rows = [list(r) for r in truth]
    tests = compare_systems([list(r) for r in bad], [list(r) for r in good], rows, n_resamples=300)
    macro = tests["chexpert_rule_f1_macro14_unc0"]
    assert macro.delta > 0.2
    assert macro.low > 0
    assert macro.p_value < 0.01
    same = compare_systems(rows, rows, rows, n_resamples=100)["chexpert_rule_f1_micro5_unc1"]
    assert (same.delta, same.p_value) == (0.0, 1.0)
