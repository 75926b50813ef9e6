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


def test_generator_and_labeler_name_the_same_fourteen_observations_in_order() -> None:
    """Both packages keep their own copy (the labeler must not import the generator it grades);
    F1 tables index both by position, so the copies must agree."""
    from clinical_eval import OBSERVATIONS as LABELER_OBSERVATIONS

    assert OBSERVATIONS == LABELER_OBSERVATIONS


@pytest.fixture(scope="module")
def canonical(cases: list[PhantomCase]) -> list[PhantomCase]:
    return list(iter_cases(11, len(cases), reports="canonical"))


def test_canonical_reports_keep_the_study_and_its_positive_findings(
    cases: list[PhantomCase], canonical: list[PhantomCase]
) -> None:
    """Only the wording changes: same image inputs, same findings, same positives and hedges."""
    for mixed, normal in zip(cases, canonical, strict=True):
        assert (normal.study_id, normal.findings, normal.acquisition) == (
            mixed.study_id,
            mixed.findings,
            mixed.acquisition,
        )
        for name in OBSERVATIONS:
            if name != "No Finding" and mixed.labels[name] in (1, -1):
                assert normal.labels[name] == mixed.labels[name], (name, normal.report.text)
        assert read_labels(normal.report.text) == normal.labels, normal.report.text


def test_canonical_reports_state_every_region_in_one_phrasing(
    canonical: list[PhantomCase],
) -> None:
    """One sentence per statement: identical findings give identical reports, and a negative
    region is always worded the same way."""
    by_findings: dict[tuple[object, ...], str] = {}
    negations: dict[str, set[str]] = {}
    for case in canonical:
        assert case.report.style == "normalized"
        blank = [o for o, v in case.labels.items() if v is None and o != "No Finding"]
        assert set(blank) <= {"Pneumonia"}, (blank, case.report.text)
        key = (case.findings, case.acquisition.view)
        assert by_findings.setdefault(key, case.report.text) == case.report.text
        for sentence in case.report.findings.split(". "):
            for name, words in KEYWORDS.items():
                if sentence.startswith(("No ", "Heart size", "The mediastinal")) and any(
                    w in sentence.lower() for w in words
                ):
                    negations.setdefault(name, set()).add(sentence.rstrip("."))
    assert len(by_findings) < len(canonical)  # the check above compared something
    assert negations["Cardiomegaly"] == {"Heart size is normal"}
    assert negations["Support Devices"] == {"No lines or tubes are seen"}


def test_an_unknown_report_form_is_refused() -> None:
    with pytest.raises(ValueError, match="reports must be one of"):
        next(iter_cases(11, 1, reports="terse"))  # type: ignore[arg-type]
