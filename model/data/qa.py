"""Visual question-answer turns generated from the phantom ground truth.

Training on these turns beside the reports makes the stage-1 model the assistant. Answers are
short and closed-form so that accuracy per question type is measurable exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REPORT_PROMPT = "Review this chest X-ray and write a report with FINDINGS and IMPRESSION."


@dataclass(frozen=True)
class QAPair:
    """One closed question with its ground-truth answer; ``kind`` groups accuracy."""

    kind: str
    question: str
    answer: str


def presence_answer(label: int | None) -> str:
    """CheXpert convention: 1 positive, -1 uncertain, 0 or blank (not mentioned) absent."""
    if label == 1:
        return "Yes."
    if label == -1:
        return "Possibly."
    return "No."


def presence_questions(labels: dict[str, int | None]) -> list[QAPair]:
    """One "Is there ...?" per observation except the catch-all "No Finding"."""
    return [
        QAPair("presence", f"Is there {observation.lower()}?", presence_answer(value))
        for observation, value in labels.items()
        if observation != "No Finding"
    ]


def attribute(finding: Any, name: str) -> Any:
    """Read ``name`` from a phantom ``Finding`` or a dict with the same keys (public data)."""
    if isinstance(finding, dict):
        return finding.get(name)
    return getattr(finding, name, None)


def laterality_questions(findings: list[Any]) -> list[QAPair]:
    """ "Which side is the X?" per lateralised finding kind; a kind seen on both sides is "Both"."""
    sides: dict[str, set[str]] = {}
    for finding in findings:
        side, kind = attribute(finding, "laterality"), attribute(finding, "kind")
        if side in ("left", "right", "bilateral") and kind and not attribute(finding, "device"):
            sides.setdefault(str(kind).replace("_", " ").lower(), set()).update(
                ("left", "right") if side == "bilateral" else (side,)
            )
    return [
        QAPair(
            "laterality",
            f"Which side is the {kind}?",
            "Both sides." if len(seen) == 2 else f"{seen.pop().capitalize()}.",
        )
        for kind, seen in sides.items()
    ]


def device_questions(findings: list[Any]) -> list[QAPair]:
    """ "Where is the X tip?" for each device whose tip position the ground truth records."""
    pairs = []
    for finding in findings:
        device = attribute(finding, "device")
        tip = attribute(finding, "tip_position")
        if device and tip:
            answer = f"{str(tip).capitalize()}."
            pairs.append(QAPair("device", f"Where is the {device} tip?", answer))
    return pairs


def questions_for(labels: dict[str, int | None], findings: list[Any]) -> list[QAPair]:
    """All closed questions the ground truth of one study can answer."""
    return presence_questions(labels) + laterality_questions(findings) + device_questions(findings)
