"""What the reading view shows beside a report's text: the labeler's findings in each sentence,
the trust signals of the draft, and the warnings a radiologist must not miss.

The trust signals (calibrated probabilities, out-of-distribution, consistency flags, critical
findings) are fields a draft gains with the trust-signals work; until a report carries them,
the view shows the labeler's reading of the text instead, and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from service.api.routes.worklist import CRITICAL_OBSERVATIONS
from workers.records import Report

VALUE_NAMES = {1: "positive", 0: "negative", -1: "uncertain"}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
TRUST_KEYS = (
    "finding_probabilities",
    "out_of_distribution",
    "ood_score",
    "consistency_flags",
    "critical_findings",
)


@dataclass(frozen=True)
class Finding:
    """An observation the labeler reads in a sentence, and how (positive, negative, uncertain)."""

    observation: str
    value: int

    @property
    def value_name(self) -> str:
        return VALUE_NAMES[self.value]


@dataclass(frozen=True)
class MarkedSentence:
    text: str
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class Alert:
    """A banner above the report: ``kind`` is ``critical``, ``ood`` or ``consistency``."""

    kind: str
    title: str
    detail: str


def sentences(text: str) -> list[str]:
    """The sentences of a report section, as a reader sees them."""
    return [part.strip() for part in _SENTENCE_END.split(text.strip()) if part.strip()]


@lru_cache(maxsize=64)
def mark_sentences(findings: str, impression: str) -> dict[str, tuple[MarkedSentence, ...]]:
    """Each sentence of both sections with the findings the labeler reads in it.

    Sentences are labelled one by one: the labeler's context rules (negation, hedging) work
    within a sentence, so a sentence's findings are the same whether read alone or in the report.
    """
    from clinical_eval import label_with_evidence

    sections = {"findings": sentences(findings), "impression": sentences(impression)}
    every = [text for texts in sections.values() for text in texts]
    labelled = iter(label_with_evidence(every) if every else [])
    marked = {}
    for section, texts in sections.items():
        marked[section] = tuple(
            MarkedSentence(text, _findings(next(labelled).mentions)) for text in texts
        )
    return marked


def _findings(mentions: Any) -> tuple[Finding, ...]:
    """One finding per observation and value, in reading order, named as a reader knows them."""
    from clinical_eval.lexicon import HEART_FAILURE, OTHER_FINDING

    names = {HEART_FAILURE: "Edema (heart failure)", OTHER_FINDING: "Other abnormality"}
    seen: dict[tuple[str, int], Finding] = {}
    for mention in mentions:
        name = names.get(mention.observation, mention.observation)
        seen.setdefault((name, mention.value), Finding(name, mention.value))
    return tuple(seen.values())


def trust_signals(report: Report) -> dict[str, Any]:
    """The draft's trust signals that the record carries (none before the trust-signals work)."""
    present = {key: getattr(report, key, None) for key in TRUST_KEYS}
    return {key: value for key, value in present.items() if value is not None}


def critical_findings(report: Report | None) -> list[str]:
    """The suspected critical findings: the draft's own list when it has one, else the
    observations of ``CRITICAL_OBSERVATIONS`` that the labeler reads as present in its text."""
    if report is None:
        return []
    listed = getattr(report, "critical_findings", None)
    if listed is not None:
        return [describe(item) for item in listed]
    labels = report.labels or {}
    return [name for name in CRITICAL_OBSERVATIONS if labels.get(name) == 1]


def alerts(report: Report) -> list[Alert]:
    """What must be read before signing, most serious first."""
    signals = trust_signals(report)
    found: list[Alert] = []
    critical = critical_findings(report)
    if critical:
        source = (
            "The draft flags it"
            if "critical_findings" in signals
            else "The labeler reads it in the draft's text (no calibrated flag on this draft)"
        )
        found.append(
            Alert(
                "critical",
                f"Suspected critical finding: {', '.join(critical)}",
                f"{source}. Confirm on the image; a confirmed critical result is called in "
                "to the referring clinician at once.",
            )
        )
    if signals.get("out_of_distribution"):
        score = signals.get("ood_score")
        scored = f" (score {score:.2f})" if isinstance(score, int | float) else ""
        found.append(
            Alert(
                "ood",
                "Outside the model's training distribution: this draft is not reliable",
                f"The image is unlike those the model learned from{scored}. Read the study "
                "unaided; the probabilities are folded away.",
            )
        )
    for flag in signals.get("consistency_flags") or []:
        found.append(Alert("consistency", "The draft contradicts itself", describe(flag)))
    return found


def describe(item: object) -> str:
    """A flag or finding as one line, whether the draft stores it as text or as a mapping."""
    if not isinstance(item, dict):
        return str(item)
    text = item.get("message") or item.get("detail")
    observation = item.get("observation") or item.get("finding") or item.get("name")
    if text and observation:
        return f"{observation}: {text}"
    if text or observation:
        return str(text or observation)
    return "; ".join(f"{key}: {value}" for key, value in item.items())
