"""Audits: every number a quality team needs about a set of drafts, plus the worst examples.

``run_audit`` computes; ``audit_html.render`` draws; ``write_outputs`` writes ``audit.json`` and
``audit.html`` atomically. Reference labels come from the labeler on the reference reports, or
from ground-truth label columns (phantom manifests) when the input has them.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clinical_eval.audit_input import AuditInput
from clinical_eval.calibration import calibration_by_label
from clinical_eval.label_metrics import f1_intervals, f1_variants, label_matrix, per_label
from clinical_eval.labeler import LabeledReport, Labels, label_with_evidence
from clinical_eval.observations import OBSERVATIONS
from clinical_eval.scoring import METRIC_GROUPS, score_detailed

VALUE_NAMES: tuple[str, ...] = ("positive", "negative", "uncertain", "blank")
"""Row/column order of the confusion matrices (reference rows, generated columns)."""
_VALUE_INDEX = {1: 0, 0: 1, -1: 2, None: 3}
WORST_COUNT = 10
LABEL_BATCH = 256

Progress = Callable[[str, int], None]
"""Called with a stage name and how many studies it just finished."""


@dataclass
class AuditReport:
    """Numbers for the JSON, plus the labelled texts of the worst studies for the HTML."""

    numbers: dict[str, Any]
    word_counts: dict[str, list[int]] = field(default_factory=dict)
    worst: list[tuple[str, LabeledReport, LabeledReport | None, dict[str, list[int | None]]]] = (
        field(default_factory=list)
    )


def _label_in_batches(texts: Sequence[str], stage: str, progress: Progress) -> list[LabeledReport]:
    out: list[LabeledReport] = []
    for start in range(0, len(texts), LABEL_BATCH):
        batch = texts[start : start + LABEL_BATCH]
        out.extend(label_with_evidence(batch))
        progress(stage, len(batch))
    return out


def confusion(generated: list[Labels], reference: list[Labels]) -> dict[str, list[list[int]]]:
    """Per observation, a 4x4 count matrix of reference value (rows) vs generated value."""
    matrices = {}
    for name in OBSERVATIONS:
        matrix = np.zeros((4, 4), dtype=int)
        for gen, ref in zip(generated, reference, strict=True):
            matrix[_VALUE_INDEX[ref[name]], _VALUE_INDEX[gen[name]]] += 1
        matrices[name] = matrix.tolist()
    return matrices


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def length_stats(texts: Sequence[str]) -> dict[str, float]:
    """Words per report: drafts much shorter or longer than references are a finding in itself."""
    counts = np.array([len(_words(t)) for t in texts], dtype=float)
    return {
        "mean_words": float(counts.mean()),
        "median_words": float(np.median(counts)),
        "p90_words": float(np.percentile(counts, 90)),
    }


def repetition_stats(texts: Sequence[str]) -> dict[str, float]:
    """Degenerate decoding shows up as repeated sentences and few distinct bigrams."""
    repeated_sentence, distinct_2 = [], []
    for text in texts:
        sentences = [s.strip().lower() for s in re.split(r"[.!?\n]+", text) if s.strip()]
        repeated_sentence.append(len(sentences) != len(set(sentences)))
        words = _words(text)
        bigrams = list(itertools.pairwise(words))
        distinct_2.append(len(set(bigrams)) / len(bigrams) if bigrams else 1.0)
    return {
        "share_with_repeated_sentence": float(np.mean(repeated_sentence)),
        "mean_distinct_bigram_ratio": float(np.mean(distinct_2)),
    }


def _disagreements(gen: Labels, ref: Labels) -> dict[str, list[int | None]]:
    return {name: [ref[name], gen[name]] for name in OBSERVATIONS if gen[name] != ref[name]}


def _label_numbers(generated: list[Labels], reference: list[Labels], n_resamples: int) -> dict:
    pred, ref = label_matrix(generated), label_matrix(reference)
    return {
        "label_f1": f1_variants(pred, ref),
        "per_label": {f"unc{u}": per_label(pred, ref, u) for u in (0, 1)},
        "intervals": {
            f"unc{u}": {k: v.as_dict() for k, v in f1_intervals(pred, ref, u, n_resamples).items()}
            for u in (0, 1)
        },
        "confusion": confusion(generated, reference),
    }


def run_audit(
    data: AuditInput,
    metrics: Sequence[str] = METRIC_GROUPS,
    n_resamples: int = 1000,
    progress: Progress | None = None,
) -> AuditReport:
    """Label both sides, score, bootstrap, and pick the worst studies.

    Parameters
    ----------
    data : AuditInput
        Validated input (see ``audit_input``).
    metrics : sequence of str
        Language metric groups to compute when reference reports exist.
    n_resamples : int
        Bootstrap resamples for the label F1 intervals.
    progress : callable, optional
        Receives (stage, studies done) for a progress bar.
    """
    tick = progress or (lambda stage, done: None)
    gen_reports = _label_in_batches(data.generated, "labelling drafts", tick)
    ref_reports = (
        _label_in_batches(data.reference, "labelling references", tick)
        if data.reference is not None
        else None
    )
    gen_labels = [r.labels for r in gen_reports]
    ref_labels = data.truth if data.truth is not None else [r.labels for r in ref_reports or []]
    numbers: dict[str, Any] = {
        "mode": data.mode,
        "labeler": "CheXpert-rule labeler (clinical_eval); not CheXbert",
        "n_studies": len(data.study_ids),
        **_label_numbers(gen_labels, ref_labels, n_resamples),
        "length": {"generated": length_stats(data.generated)},
        "repetition": {"generated": repetition_stats(data.generated)},
    }
    samples: dict[str, list[float]] = {}
    language_groups = [m for m in metrics if m != "labels"]
    if data.reference is not None:
        numbers["length"]["reference"] = length_stats(data.reference)
        numbers["repetition"]["reference"] = repetition_stats(data.reference)
        if language_groups:
            scored = score_detailed(data.generated, data.reference, language_groups)
            numbers["language"], samples = scored.corpus, scored.samples
        tick("language metrics", len(data.study_ids))
    if data.confidence is not None:
        numbers["calibration"] = calibration_by_label(data.confidence, ref_labels)
    disagreements = [_disagreements(g, r) for g, r in zip(gen_labels, ref_labels, strict=True)]
    numbers["samples"] = [
        {
            "study_id": study_id,
            "label_disagreements": disagreements[i],
            **{name: values[i] for name, values in samples.items()},
        }
        for i, study_id in enumerate(data.study_ids)
    ]
    rouge = samples.get("rouge_l", [0.0] * len(data.study_ids))
    order = sorted(range(len(data.study_ids)), key=lambda i: (-len(disagreements[i]), rouge[i]))
    worst = order[:WORST_COUNT]
    numbers["worst_study_ids"] = [data.study_ids[i] for i in worst]
    report = AuditReport(numbers, {"draft": [len(_words(t)) for t in data.generated]})
    if data.reference is not None:
        report.word_counts["reference"] = [len(_words(t)) for t in data.reference]
    report.worst = [
        (
            data.study_ids[i],
            gen_reports[i],
            ref_reports[i] if ref_reports is not None else None,
            disagreements[i],
        )
        for i in worst
    ]
    return report


def _atomic_write(path: Path, content: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(content)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_outputs(out_dir: Path, report: AuditReport, html: str) -> tuple[Path, Path]:
    """Write ``audit.json`` and ``audit.html``; each appears whole or not at all."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "audit.json", out_dir / "audit.html"
    _atomic_write(json_path, json.dumps(report.numbers, indent=2, allow_nan=False))
    _atomic_write(html_path, html)
    return json_path, html_path
