"""What the reading view puts beside the text: the labeler's findings per sentence, and the
warnings from the draft's trust signals (or, before a draft has them, from the labeler)."""

from __future__ import annotations

import pytest

from service.web.reading import alerts, critical_findings, mark_sentences, sentences
from workers.records import Report

pytestmark = pytest.mark.unit


def _draft(labels: dict[str, int | None] | None = None, **signals: object) -> Report:
    report = Report(findings="", impression="", labels=labels or {}, kind="draft")
    for key, value in signals.items():
        setattr(report, key, value)  # the trust-signals fields a draft gains with issue 30
    return report


def test_sentences_split_where_a_reader_would() -> None:
    assert sentences("Heart normal. No effusion!  Lungs clear?\n") == [
        "Heart normal.",
        "No effusion!",
        "Lungs clear?",
    ]
    assert sentences("  ") == []


def test_each_sentence_carries_the_findings_read_in_it() -> None:
    marked = mark_sentences(
        "Small left pleural effusion. No pneumothorax. Possible basal atelectasis.",
        "Left effusion.",
    )
    readings = [
        [(f.observation, f.value_name) for f in sentence.findings]
        for sentence in marked["findings"]
    ]
    assert readings == [
        [("Pleural Effusion", "positive")],
        [("Pneumothorax", "negative")],
        [("Atelectasis", "uncertain")],
    ]
    assert [s.text for s in marked["impression"]] == ["Left effusion."]
    assert mark_sentences("", "") == {"findings": (), "impression": ()}


def test_without_trust_signals_the_labeler_flags_a_critical_finding() -> None:
    draft = _draft({"Pneumothorax": 1})
    assert critical_findings(draft) == ["Pneumothorax"]
    (alert,) = alerts(draft)
    assert alert.kind == "critical" and "labeler" in alert.detail
    assert alerts(_draft({"Pneumothorax": 0})) == []


def test_the_drafts_own_signals_decide_when_present() -> None:
    draft = _draft(
        {"Pneumothorax": 1},
        critical_findings=[],
        out_of_distribution=True,
        ood_score=7.5,
        consistency_flags=[{"observation": "Cardiomegaly", "message": "negated, then asserted"}],
    )
    assert critical_findings(draft) == []  # the calibrated flag overrides the labeler
    ood, consistency = alerts(draft)
    assert ood.kind == "ood" and "(score 7.50)" in ood.detail
    assert (consistency.kind, consistency.detail) == (
        "consistency",
        "Cardiomegaly: negated, then asserted",
    )
