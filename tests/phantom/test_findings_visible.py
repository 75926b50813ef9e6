"""Every finding changes the pixels where it should, and only there.

Each test renders one normal PA study twice, without and with a single finding, and compares
regions of the displayed image. Regions are image quadrants/bands: the patient's right is the
image's left, the apices are at the top, the costophrenic angles in the lower half.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from model.data.phantom import Finding, PhantomCase, iter_cases, render

pytestmark = pytest.mark.unit
SIZE = 192
VISIBLE = 0.015  # mean brightness change that counts as visible (display units)
UNCHANGED = 0.002
FOCAL = 0.05  # change of the most-changed pixels for a focal finding


@pytest.fixture(scope="module")
def base() -> PhantomCase:
    case = next(
        c
        for c in iter_cases(0, 400)
        if not c.findings and c.acquisition.view == "PA" and abs(c.acquisition.rotation_deg) < 2
    )
    return case


def difference(base: PhantomCase, *findings: Finding) -> np.ndarray:
    """Displayed brightness with the findings minus without (same noise in both)."""
    with_finding = dataclasses.replace(base, findings=findings)
    return render(with_finding, SIZE) - render(base, SIZE)


def window(diff: np.ndarray, rows: tuple[float, float], cols: tuple[float, float]) -> np.ndarray:
    r0, r1 = int(rows[0] * SIZE), int(rows[1] * SIZE)
    c0, c1 = int(cols[0] * SIZE), int(cols[1] * SIZE)
    return diff[r0:r1, c0:c1]


def region(diff: np.ndarray, rows: tuple[float, float], cols: tuple[float, float]) -> float:
    """Mean change over a region: what a diffuse finding must move."""
    return float(window(diff, rows, cols).mean())


def peak(diff: np.ndarray, rows: tuple[float, float], cols: tuple[float, float]) -> float:
    """Change of the most-changed 2% of a region: what a focal finding must move."""
    return float(np.percentile(window(diff, rows, cols), 98))


PATIENT_RIGHT, PATIENT_LEFT = (0.0, 0.5), (0.5, 1.0)
UPPER, LOWER = (0.1, 0.45), (0.45, 0.9)


@pytest.mark.parametrize(
    ("finding", "brighter", "untouched"),
    [
        (
            Finding("effusion", laterality="right", zone="lower", severity="moderate"),
            (LOWER, PATIENT_RIGHT),
            ((0.0, 1.0), PATIENT_LEFT),
        ),
        (
            Finding("effusion", laterality="left", zone="lower", severity="small"),
            (LOWER, PATIENT_LEFT),
            ((0.0, 1.0), PATIENT_RIGHT),
        ),
        (
            Finding(
                "lesion",
                laterality="right",
                zone="upper",
                size_mm=30.0,
                lesion_type="nodule",
                center=(-0.55, 0.25),
            ),
            (UPPER, PATIENT_RIGHT),
            ((0.0, 1.0), PATIENT_LEFT),
        ),
        (
            Finding("consolidation", laterality="left", zone="lower"),
            (LOWER, PATIENT_LEFT),
            ((0.0, 1.0), PATIENT_RIGHT),
        ),
        (
            Finding("pneumonia", laterality="right", zone="upper"),
            (UPPER, PATIENT_RIGHT),
            ((0.0, 1.0), PATIENT_LEFT),
        ),
        (
            Finding("opacity", laterality="left", zone="middle", severity="moderate"),
            ((0.25, 0.7), PATIENT_LEFT),
            ((0.0, 1.0), PATIENT_RIGHT),
        ),
        (
            Finding("atelectasis", laterality="right", zone="lower", severity="plate-like"),
            (LOWER, PATIENT_RIGHT),
            ((0.0, 1.0), PATIENT_LEFT),
        ),
        (
            Finding("pleural_thickening", laterality="left", zone="upper"),
            (UPPER, PATIENT_LEFT),
            ((0.0, 1.0), PATIENT_RIGHT),
        ),
        (
            Finding("edema", laterality="bilateral", severity="moderate"),
            ((0.3, 0.7), (0.15, 0.45)),
            ((0.0, 0.1), (0.0, 1.0)),
        ),
        (
            Finding("cardiomegaly", severity="moderate", ctr=0.64),
            ((0.5, 0.8), (0.25, 0.75)),
            ((0.0, 0.3), (0.0, 1.0)),
        ),
        (
            Finding("widened_mediastinum", severity="marked"),
            ((0.15, 0.45), (0.35, 0.65)),
            ((0.7, 1.0), (0.0, 1.0)),
        ),
        (
            Finding(
                "device", device="pacemaker", laterality="left", tip_position="right ventricle"
            ),
            ((0.2, 0.45), (0.65, 0.9)),
            ((0.0, 1.0), (0.0, 0.35)),
        ),
        (
            Finding(
                "device",
                device="central venous catheter",
                laterality="right",
                tip_position="cavoatrial junction",
            ),
            ((0.1, 0.45), (0.2, 0.5)),
            ((0.0, 1.0), (0.6, 1.0)),
        ),
    ],
    ids=lambda v: v.kind + "-" + str(v.laterality) if isinstance(v, Finding) else "",
)
def test_finding_brightens_its_region_and_not_the_other(
    base: PhantomCase,
    finding: Finding,
    brighter: tuple[tuple[float, float], tuple[float, float]],
    untouched: tuple[tuple[float, float], tuple[float, float]],
) -> None:
    diff = difference(base, finding)
    assert peak(diff, *brighter) > FOCAL
    assert abs(region(diff, *untouched)) < UNCHANGED


def test_pneumothorax_darkens_the_apex_of_its_side_only(base: PhantomCase) -> None:
    diff = difference(
        base, Finding("pneumothorax", laterality="left", zone="upper", severity="moderate")
    )
    assert float(np.percentile(window(diff, UPPER, PATIENT_LEFT), 2)) < -FOCAL
    assert region(diff, UPPER, PATIENT_LEFT) < 0
    assert abs(region(diff, (0.0, 1.0), PATIENT_RIGHT)) < UNCHANGED


def test_rib_fracture_changes_its_side_only(base: PhantomCase) -> None:
    diff = difference(
        base, Finding("fracture", laterality="right", rib=6, zone="middle", severity="displaced")
    )
    assert peak(np.abs(diff), (0.2, 0.6), PATIENT_RIGHT) > FOCAL
    assert float(np.abs(diff[:, SIZE // 2 :]).max()) == 0.0


def test_endotracheal_tube_tip_follows_the_distance_to_the_carina(base: PhantomCase) -> None:
    def tip_row(distance_cm: float) -> int:
        diff = difference(
            base,
            Finding(
                "device",
                device="endotracheal tube",
                tip_position="appropriate",
                tip_to_carina_cm=distance_cm,
            ),
        )
        column = diff[:, SIZE // 2 - 3 : SIZE // 2 + 3].max(axis=1)
        return int(np.nonzero(column > 0.05)[0].max())

    assert tip_row(2.0) > tip_row(6.0) + 3


def test_larger_effusions_reach_higher(base: PhantomCase) -> None:
    def brightened_rows(severity: str) -> int:
        diff = difference(
            base, Finding("effusion", laterality="right", zone="lower", severity=severity)
        )
        return int((diff[:, : SIZE // 2].mean(axis=1) > 0.01).sum())

    assert brightened_rows("small") < brightened_rows("moderate") < brightened_rows("large")
