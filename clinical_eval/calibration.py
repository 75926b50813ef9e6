"""Calibration of a model's per-finding confidence against reference labels.

Reliability bins of equal width and the expected calibration error (ECE, Naeini et al. 2015;
Guo et al. 2017): the count-weighted mean gap between mean confidence and observed positive rate
per bin. A reference label counts as positive only when it is 1 (uncertain counts as negative).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

N_BINS = 10


def reliability(confidence: Sequence[float], positive: Sequence[bool]) -> dict[str, Any]:
    """Bins of (mean confidence, observed rate, count) and the ECE."""
    scores = np.asarray(confidence, dtype=float)
    truth = np.asarray(positive, dtype=float)
    edges = np.linspace(0, 1, N_BINS + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, N_BINS - 1)
    bins, gap = [], 0.0
    for index in range(N_BINS):
        members = which == index
        count = int(members.sum())
        if count == 0:
            continue
        mean_confidence = float(scores[members].mean())
        observed = float(truth[members].mean())
        gap += count * abs(mean_confidence - observed)
        bins.append({"mean_confidence": mean_confidence, "observed_rate": observed, "count": count})
    return {"ece": gap / len(scores), "bins": bins}


def calibration_by_label(
    confidence: dict[str, list[float]], reference: Sequence[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Reliability per observation that has a confidence column, plus all of them pooled."""
    out = {}
    pooled_scores: list[float] = []
    pooled_truth: list[bool] = []
    for name, scores in confidence.items():
        truth = [row[name] == 1 for row in reference]
        out[name] = reliability(scores, truth)
        pooled_scores += scores
        pooled_truth += truth
    out["pooled"] = reliability(pooled_scores, pooled_truth)
    return out
