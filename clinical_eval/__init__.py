"""Clinical evaluation of report drafts: CheXpert-rule labeler, label F1, language metrics, audits.

Heavy dependencies (spaCy, medspaCy, pycocoevalcap, sentence-transformers) load on first use, so
importing the package is cheap.
"""

from clinical_eval.adapters import ADAPTERS, evaluate_external
from clinical_eval.errors import (
    AuditInputError,
    ClinicalEvalError,
    LabelFormatError,
    MetricInputError,
    ModelIntegrityError,
)
from clinical_eval.label_metrics import compare_systems, label_f1
from clinical_eval.labeler import LabeledReport, Mention, label, label_with_evidence
from clinical_eval.observations import FIVE_COMPETITION, OBSERVATIONS
from clinical_eval.scoring import METRIC_GROUPS, score, score_detailed

__all__ = [
    "ADAPTERS",
    "FIVE_COMPETITION",
    "METRIC_GROUPS",
    "OBSERVATIONS",
    "AuditInputError",
    "ClinicalEvalError",
    "LabelFormatError",
    "LabeledReport",
    "Mention",
    "MetricInputError",
    "ModelIntegrityError",
    "compare_systems",
    "evaluate_external",
    "label",
    "label_f1",
    "label_with_evidence",
    "score",
    "score_detailed",
]
