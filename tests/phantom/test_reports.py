"""Reports agree with their label vectors and their findings.

The checker below is deliberately independent of the generator's phrasing tables: a small
keyword list per observation and three sentence polarities (hedged, negated, positive). If the
grammar ever writes a sentence whose plain reading disagrees with the labels, this fails.
"""

from __future__ import annotations

import re

import pytest

from clinical_eval.observations import OBSERVATIONS
from model.data.phantom import PhantomCase, iter_cases

pytestmark = pytest.mark.unit

KEYWORDS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": ("mediastin",),
    "Cardiomegaly": ("cardiomegaly", "heart", "cardiac silhouette"),
    "Lung Opacity": ("opacity", "opacities"),
    "Lung Lesion": ("nodule", "mass"),
    "Edema": ("edema",),
    "Consolidation": ("consolidat",),
    "Pneumonia": ("pneumonia",),
    "Atelectasis": ("atelectasis",),
    "Pneumothorax": ("pneumothorax",),
    "Pleural Effusion": ("effusion",),
    "Pleural Other": ("pleural thickening",),
    "Fracture": ("fracture", "osseous"),
    "Support Devices": ("tube", "catheter", "central line", "pacemaker", "support devices"),
}
NORMAL_STUDY = ("no acute cardiopulmonary",)
HEDGE = re.compile(r"\b(may|cannot be excluded|possible)\b")
NEGATION = re.compile(r"\b(no|not|normal|without)\b")
# Which label a finding of each kind must produce, present / uncertain.
FINDING_LABEL = {
    "cardiomegaly": "Cardiomegaly",
    "widened_mediastinum": "Enlarged Cardiomediastinum",
    "opacity": "Lung Opacity",
    "lesion": "Lung Lesion",
    "edema": "Edema",
    "consolidation": "Consolidation",
    "pneumonia": "Pneumonia",
    "atelectasis": "Atelectasis",
    "pneumothorax": "Pneumothorax",
    "effusion": "Pleural Effusion",
    "pleural_thickening": "Pleural Other",
    "fracture": "Fracture",
    "device": "Support Devices",
}


def read_labels(text: str) -> dict[str, int | None]:
    """Label a report the way a simple rule-based labeler would."""
    labels: dict[str, int | None] = dict.fromkeys(OBSERVATIONS)
    rank = {1: 3, -1: 2, 0: 1}
    for sentence in re.split(r"(?<=[.;])\s+|\n", text.lower()):
        if any(k in sentence for k in NORMAL_STUDY):
            labels["No Finding"] = 1
            continue
        value = -1 if HEDGE.search(sentence) else 0 if NEGATION.search(sentence) else 1
        for name, words in KEYWORDS.items():
            current = labels[name]
            if any(w in sentence for w in words) and (
                current is None or rank[value] > rank[current]
            ):
                labels[name] = value
    pathologies = [o for o in OBSERVATIONS if o not in ("No Finding", "Support Devices")]
    if any(labels[o] in (1, -1) for o in pathologies):
        labels["No Finding"] = None
    return labels


@pytest.fixture(scope="module")
def cases() -> list[PhantomCase]:
    return list(iter_cases(11, 500))


def test_every_report_reads_back_to_its_label_vector(cases: list[PhantomCase]) -> None:
    for case in cases:
        assert read_labels(case.report.text) == case.labels, case.report.text


def test_every_finding_sets_its_label_and_hedges_only_uncertain_ones(
    cases: list[PhantomCase],
) -> None:
    for case in cases:
        for finding in case.findings:
            expected = -1 if finding.certainty == "uncertain" else 1
            assert case.labels[FINDING_LABEL[finding.kind]] in (expected, 1), case.report.text
        if not any(f.certainty == "uncertain" for f in case.findings):
            assert not HEDGE.search(case.report.text.lower()), case.report.text


def test_normalized_reports_cover_every_region(cases: list[PhantomCase]) -> None:
    normalized = [c for c in cases if c.report.style == "normalized"]
    assert len(normalized) > 100
    for case in normalized:
        blank = [o for o, v in case.labels.items() if v is None and o != "No Finding"]
        assert set(blank) <= {"Pneumonia"}, (blank, case.report.text)


def test_exception_reports_leave_unmentioned_observations_blank(
    cases: list[PhantomCase],
) -> None:
    exception = [c for c in cases if c.report.style == "exception"]
    assert len(exception) > 100
    for case in exception:
        assert 0 not in case.labels.values(), case.report.text


def test_reports_have_both_sections_and_varied_wording(cases: list[PhantomCase]) -> None:
    effusion_sentences = set()
    for case in cases:
        assert case.report.text.startswith("FINDINGS: ")
        assert "\nIMPRESSION: " in case.report.text
        for sentence in case.report.findings.split(". "):
            if "effusion" in sentence and case.labels["Pleural Effusion"] == 1:
                effusion_sentences.add(
                    re.sub(r"\b(left|right|small|moderate|large)\b", "", sentence)
                )
    assert len(effusion_sentences) >= 3
