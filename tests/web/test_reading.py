"""What the reading view puts beside the text: the labeler's findings per sentence, and the
warnings from the draft's trust signals (or, before a draft has them, from the labeler)."""

from __future__ import annotations

import re

import pytest

from service.web.reading import (
    alerts,
    critical_findings,
    mark_sentences,
    sentences,
    trust_signals,
)
from workers.records import Report, Study, now

pytestmark = pytest.mark.unit


def _draft(labels: dict[str, int | None] | None = None, **signals: object) -> Report:
    report = Report(findings="", impression="", labels=labels or {}, kind="draft")
    for key, value in signals.items():
        setattr(report, key, value)  # the trust-signals fields a draft gains with issue 30
    return report


def _study() -> Study:
    return Study(id="s" * 32, identifiers={}, priority="routine", created_at=now())


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


def test_the_reading_view_folds_probabilities_away_out_of_distribution() -> None:
    """The template's branch for drafts that carry calibrated probabilities."""
    from starlette.requests import Request

    from service.web.pages import TEMPLATES
    from service.web.session import Viewer

    draft = _draft(
        {"Pleural Effusion": 1},
        out_of_distribution=True,
        ood_score=3.0,
        finding_probabilities={"Pleural Effusion": 0.81, "Edema": 0.07},
    )
    request = Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/app/studies/s",
            "query_string": b"",
            "headers": [],
        }
    )
    html = TEMPLATES.get_template("review.html").render(
        request=request,
        viewer=Viewer("u", "Dr A", "auditor", "", "token"),
        menu=[],
        title="t",
        path="/app/studies/s",
        study=_study(),
        job=None,
        reading="draft_ready",
        versions=[draft],
        shown=draft,
        marks={"findings": (), "impression": ()},
        alerts=alerts(draft),
        signals=trust_signals(draft),
        signable=False,
        edited={},
        error="",
        image={"error": "no image in this test"},
    )
    folded = html[html.index('<details class="unreliable">') : html.index("</details>")]
    table = folded[folded.index('<table class="probabilities">') :]
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td></tr>", table)
    assert rows[:2] == [("Pleural Effusion", "81 %"), ("Edema", "7 %")]
    assert "Outside the model&#39;s training distribution" in html
