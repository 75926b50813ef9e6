"""The in-memory API: deterministic ground truth, patient-level splits, training renders."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from clinical_eval.observations import OBSERVATIONS
from model.data.phantom import iter_cases, render, sample_case

pytestmark = pytest.mark.unit


def test_observations_are_the_fourteen_chexpert_names_in_order() -> None:
    assert OBSERVATIONS[0] == "No Finding"
    assert OBSERVATIONS[-1] == "Support Devices"
    assert len(set(OBSERVATIONS)) == 14
    assert OBSERVATIONS.index("Lung Opacity") < OBSERVATIONS.index("Lung Lesion")


def test_same_seed_and_index_give_the_same_case_and_identical_image_bytes() -> None:
    first, second = sample_case(7, 11), sample_case(7, 11)
    assert first == second
    assert render(first).tobytes() == render(second).tobytes()


def test_different_seeds_give_different_studies() -> None:
    assert render(sample_case(0, 1)).tobytes() != render(sample_case(1, 1)).tobytes()


def test_labels_use_the_chexpert_values_for_every_observation() -> None:
    for case in iter_cases(3, 40):
        assert list(case.labels) == list(OBSERVATIONS)
        assert set(case.labels.values()) <= {1, 0, -1, None}


def test_both_studies_of_a_patient_share_patient_id_and_split() -> None:
    for index in range(0, 60, 2):
        first, second = sample_case(5, index), sample_case(5, index + 1)
        assert first.patient_id == second.patient_id
        assert first.split == second.split
        assert first.identity.patient_name == second.identity.patient_name


def test_splits_are_roughly_eighty_ten_ten_by_patient() -> None:
    from model.data.phantom.cases import split_of

    splits = [split_of(0, 2 * patient) for patient in range(2000)]
    assert 0.75 < splits.count("train") / 2000 < 0.85
    assert 0.07 < splits.count("test") / 2000 < 0.13


def test_iter_cases_filters_by_split_and_rejects_unknown_splits() -> None:
    cases = list(iter_cases(0, 5, split="test"))
    assert len(cases) == 5
    assert {c.split for c in cases} == {"test"}
    with pytest.raises(ValueError, match="split must be one of"):
        next(iter_cases(0, 1, split="training"))


def test_population_is_not_uniform_and_includes_normals() -> None:
    cases = list(iter_cases(0, 400))
    normal = sum(c.labels["No Finding"] == 1 for c in cases) / len(cases)
    positives = {o: sum(c.labels[o] == 1 for c in cases) for o in OBSERVATIONS}
    assert 0.2 < normal < 0.6
    assert positives["Support Devices"] > 3 * positives["Pleural Other"]
    assert all(count > 0 for count in positives.values())


def test_render_is_a_float32_square_in_unit_range() -> None:
    image = render(sample_case(0, 2), size=128)
    assert image.shape == (128, 128)
    assert image.dtype == np.float32
    assert float(image.min()) >= 0.0
    assert float(image.max()) <= 1.0


def test_render_keeps_the_detector_aspect_with_zero_padding() -> None:
    case = next(c for c in iter_cases(0, 200) if c.acquisition.columns < 0.9 * c.acquisition.rows)
    flat = dataclasses.replace(
        case, acquisition=dataclasses.replace(case.acquisition, collimation=(0.0, 0.0, 0.0, 0.0))
    )
    image = render(flat, size=200)
    margin = int(200 * (1 - case.acquisition.columns / case.acquisition.rows) / 2) - 2
    assert margin > 5
    assert float(np.abs(image[:, :margin]).max()) == 0.0
    assert float(image[:, margin + 4 : -margin - 4].mean()) > 0.2


def test_render_rejects_tiny_sizes() -> None:
    with pytest.raises(ValueError, match="size must be"):
        render(sample_case(0, 0), size=8)


def test_negative_seed_is_rejected() -> None:
    with pytest.raises(ValueError, match="seed and index"):
        sample_case(-1, 0)
