from __future__ import annotations

import pytest

from model.data.phantom import sample_case
from model.data.qa import QAPair, presence_answer, questions_for

pytestmark = pytest.mark.unit


def test_presence_follows_the_chexpert_convention() -> None:
    assert [presence_answer(v) for v in (1, -1, 0, None)] == ["Yes.", "Possibly.", "No.", "No."]


def test_a_kind_seen_on_both_sides_is_one_both_sides_answer() -> None:
    findings = [
        {"kind": "effusion", "laterality": "right"},
        {"kind": "effusion", "laterality": "left"},
        {"kind": "pneumothorax", "laterality": "left"},
    ]
    pairs = questions_for({}, findings)
    assert QAPair("laterality", "Which side is the effusion?", "Both sides.") in pairs
    assert QAPair("laterality", "Which side is the pneumothorax?", "Left.") in pairs
    assert len(pairs) == 2


def test_device_tip_question_from_the_ground_truth() -> None:
    pairs = questions_for(
        {}, [{"kind": "device", "device": "endotracheal tube", "tip_position": "low"}]
    )
    assert pairs == [QAPair("device", "Where is the endotracheal tube tip?", "Low.")]


def test_phantom_case_questions_agree_with_its_labels() -> None:
    case = sample_case(0, 5)
    pairs = {p.question: p.answer for p in questions_for(dict(case.labels), list(case.findings))}
    assert len([q for q in pairs if q.startswith("Is there")]) == 13
    for name, value in case.labels.items():
        if name != "No Finding":
            assert pairs[f"Is there {name.lower()}?"] == (
                "Yes." if value == 1 else "Possibly." if value == -1 else "No."
            )
