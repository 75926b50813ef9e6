"""What the reading view puts beside the text: the labeler's findings per sentence with the
calibrated probabilities, and the warnings from the draft's trust signals."""

from __future__ import annotations

import re

import pytest

from model.trust import ConsistencyFlag, Trust
from service.web.reading import (
    MarkedSentence,
    alerts,
    critical_findings,
    mark_sentences,
    sentences,
    trust_signals,
)
from workers.records import Report, Study, now

pytestmark = pytest.mark.unit


def _draft(labels: dict[str, int | None] | None = None, trust: Trust | None = None) -> Report:
    document = None if trust is None else trust.to_json()
    return Report(findings="", impression="", labels=labels or {}, kind="draft", trust=document)


def _trust(ood_score: float = 1.0, **fields: object) -> Trust:
    given: dict = {"finding_probabilities": {"Pneumothorax": 0.1}, "ood_threshold": 3.0, **fields}
    return Trust(ood_score=ood_score, **given)


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


def test_without_trust_signals_nothing_is_suspected_or_flagged() -> None:
    """The labeler's reading of the text is no calibrated signal: a draft from a checkpoint
    without trust statistics raises no alert, whatever its text says."""
    draft = _draft({"Pneumothorax": 1})
    assert critical_findings(draft) == [] and alerts(draft) == [] and trust_signals(draft) == {}


def test_the_drafts_own_signals_raise_the_alerts_most_serious_first() -> None:
    draft = _draft(
        {"Pneumothorax": 0},
        _trust(
            ood_score=7.5,
            critical_findings=["Pneumothorax"],
            consistency_flags=[
                ConsistencyFlag("Cardiomegaly", "sections", "negated, then asserted")
            ],
        ),
    )
    assert critical_findings(draft) == ["Pneumothorax"]  # the calibrated flag, not the labeler
    ood, critical, consistency = alerts(draft)
    assert ood.kind == "ood" and "outside the model's training distribution" in ood.title
    assert "(score 7.50 > threshold 3.00)" in ood.detail
    assert critical.title == "Suspected critical finding: Pneumothorax"
    assert (consistency.kind, consistency.detail) == (
        "consistency",
        "Cardiomegaly: negated, then asserted",
    )
    assert alerts(_draft(trust=_trust())) == []  # in distribution, nothing critical or flagged


def _render(draft: Report, marks: dict[str, tuple[MarkedSentence, ...]]) -> str:
    """The reading view's template for ``draft``, as the route renders it."""
    from starlette.requests import Request

    from service.web.pages import TEMPLATES
    from service.web.session import Viewer

    request = Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/app/studies/s",
            "query_string": b"",
            "headers": [],
        }
    )
    return TEMPLATES.get_template("review.html").render(
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
        marks=marks,
        alerts=alerts(draft),
        signals=trust_signals(draft),
        signable=False,
        edited={},
        error="",
        image={"error": "no image in this test"},
    )


def test_the_reading_view_folds_probabilities_away_out_of_distribution() -> None:
    """The template's branch for drafts that carry calibrated probabilities."""
    probabilities = {"Pleural Effusion": 0.81, "Edema": 0.07}
    draft = _draft(
        {"Pleural Effusion": 1}, _trust(ood_score=4.0, finding_probabilities=probabilities)
    )
    html = _render(draft, mark_sentences("Small left pleural effusion.", ""))
    folded = html[html.index('<details class="unreliable">') : html.index("</details>")]
    table = folded[folded.index('<table class="probabilities">') :]
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td></tr>", table)
    assert rows[:2] == [("Pleural Effusion", "81 %"), ("Edema", "7 %")]
    assert "outside the model&#39;s training distribution — not reliable" in html
    assert '<span class="badge ood">Not reliable</span>' in html
    assert 'class="probability"' not in html  # no percentage beside the marks either


def test_each_mark_shows_its_calibrated_probability() -> None:
    draft = _draft(
        {"Pleural Effusion": 1},
        _trust(
            finding_probabilities={"Pleural Effusion": 0.81, "Pneumothorax": 0.9},
            critical_findings=["Pneumothorax"],
        ),
    )
    html = _render(draft, mark_sentences("Small left pleural effusion. No pneumothorax.", ""))
    assert re.search(r'Pleural Effusion: positive<span class="probability"[^>]*>81 %</span>', html)
    assert re.search(r'Pneumothorax: negative<span class="probability"[^>]*>90 %</span>', html)
    assert '<span class="badge critical">Critical? Pneumothorax</span>' in html
    assert '<details class="unreliable">' not in html
