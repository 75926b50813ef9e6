"""What a reader needs to know before trusting a draft: the signals every output carries.

A draft is fluent whatever the image, so the text alone cannot tell a radiologist when to doubt
it. These signals travel with each ``model.report.Report`` into ``report.json``, the SR, the PDF,
FHIR, the API and the workspace:

- ``finding_probabilities``: the finding head's calibrated probability per observation;
- ``out_of_distribution`` / ``ood_score``: how far the image lies from what the model was trained on
  (above ``ood_threshold`` the draft is marked not reliable);
- ``consistency_flags``: contradictions between the findings, the impression and the head;
- ``critical_findings``: the configured critical observations whose probability crossed its
  threshold, so the worklist can surface the study.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ConsistencyFlag:
    """One contradiction about one observation, e.g. negated in the findings, asserted in the
    impression (``kind`` names which check found it; ``detail`` says it in words)."""

    observation: str
    kind: str
    detail: str


@dataclass(frozen=True)
class Trust:
    finding_probabilities: dict[str, float]
    ood_score: float
    ood_threshold: float
    consistency_flags: list[ConsistencyFlag] = field(default_factory=list)
    critical_findings: list[str] = field(default_factory=list)

    @property
    def out_of_distribution(self) -> bool:
        return self.ood_score > self.ood_threshold

    def to_json(self) -> dict[str, Any]:
        """The keys every JSON output uses (``report.json``, the API)."""
        return {
            "finding_probabilities": dict(self.finding_probabilities),
            "out_of_distribution": self.out_of_distribution,
            "ood_score": self.ood_score,
            "ood_threshold": self.ood_threshold,
            "consistency_flags": [
                {"observation": f.observation, "kind": f.kind, "detail": f.detail}
                for f in self.consistency_flags
            ],
            "critical_findings": list(self.critical_findings),
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Trust:
        probabilities = document["finding_probabilities"]
        return cls(
            finding_probabilities={name: float(p) for name, p in probabilities.items()},
            ood_score=float(document["ood_score"]),
            ood_threshold=float(document["ood_threshold"]),
            consistency_flags=[ConsistencyFlag(**flag) for flag in document["consistency_flags"]],
            critical_findings=list(document["critical_findings"]),
        )
