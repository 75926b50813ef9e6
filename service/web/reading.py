"""What the reading view shows beside a report's text: the labeler's findings in each sentence,
the trust signals of the draft, and the warnings a radiologist must not miss.

The trust signals (calibrated probabilities, out-of-distribution, consistency flags, critical
findings) are the draft's ``trust`` record; a draft whose checkpoint ships no trust statistics
(and a signed version) has none, and the view says so beside the labeler's reading of the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from dicom.draft import OOD_WARNING, TRUST_KEYS, flag_text
from service.api.routes.worklist import critical_findings
from workers.records import Report

VALUE_NAMES = {1: "positive", 0: "negative", -1: "uncertain"}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


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
    """The draft's trust signals by report.json's keys; empty for a version without them."""
    return {key: report.trust[key] for key in TRUST_KEYS} if report.trust is not None else {}


def alerts(report: Report) -> list[Alert]:
    """What must be read before signing, most serious first: out of distribution, suspected
    critical findings, contradictions."""
    signals = trust_signals(report)
    found: list[Alert] = []
    if signals.get("out_of_distribution"):
        found.append(
            Alert(
                "ood",
                f"The image lies {OOD_WARNING}",
                f"It is unlike those the model learned from (score {signals['ood_score']:.2f} > "
                f"threshold {signals['ood_threshold']:.2f}). Read the study unaided; the "
                "probabilities are folded away.",
            )
        )
    critical = critical_findings(report)
    if critical:
        found.append(
            Alert(
                "critical",
                f"Suspected critical finding: {', '.join(critical)}",
                "Its calibrated probability crossed the alert threshold. Confirm on the image; "
                "a confirmed critical result is called in to the referring clinician at once.",
            )
        )
    for flag in signals.get("consistency_flags") or []:
        found.append(Alert("consistency", "The draft contradicts itself", flag_text(flag)))
    return found
