"""Audits: every number a quality team needs about a set of drafts, plus the worst examples.

``run_audit`` computes; ``audit_html.render`` draws; ``write_outputs`` writes ``audit.json`` and
``audit.html`` atomically. Reference labels come from the labeler on the reference reports, or
from ground-truth label columns (phantom manifests) when the input has them.

Conventions, stated once here and on the page:

- Headline cards use one convention, uncertain = negative (``unc0``, LLaVA-Rad's default and what
  ``echocxr bench`` and the README report), each with its 95% bootstrap interval; the tables
  give every convention.
- A missing draft counts as an empty report in the label numbers (every reference finding is
  missed), so missing drafts cannot flatter an audit; the language metrics and text statistics
  cover the drafted studies only (an empty text has no words to score).
- The worst studies are ranked by the label disagreements that change the headline F1 (a finding
  positive on one side only; "negative" against "not mentioned" never does), then by clinical
  weight (``CLINICAL_WEIGHT``: a missed or false pneumothorax first), then by lowest ROUGE-L.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from clinical_eval.audit_input import AuditInput
from clinical_eval.bootstrap import bootstrap_ci, mean_of
from clinical_eval.calibration import calibration_by_label
from clinical_eval.label_metrics import (
    DEFAULT_PREFIX,
    binarize,
    f1_intervals,
    f1_variants,
    label_matrix,
    per_label,
)
from clinical_eval.labeler import LabeledReport, Labels, label_with_evidence
from clinical_eval.observations import OBSERVATIONS
from clinical_eval.scoring import METRIC_GROUPS, chosen_groups, metric_name, score_detailed

VALUE_NAMES: tuple[str, ...] = ("positive", "negative", "uncertain", "blank")
"""Row/column order of the confusion matrices (reference rows, generated columns)."""
_VALUE_INDEX = {1: 0, 0: 1, -1: 2, None: 3}
WORST_COUNT = 10
LABEL_BATCH = 256
HEADLINE_UNCERTAIN_AS = 0
HEADLINE_CONVENTION = "uncertain = negative"
AGGREGATES = ("micro14", "macro14", "micro5", "macro5")
MEAN_OF_SAMPLES = ("rouge_l", "rouge_l_rougescore_f1", "minilm_cosine")
"""Language metrics whose corpus value is the mean over studies, so a bootstrap of studies gives
their interval; corpus BLEU, METEOR and CIDEr-D are not, and get none."""
HEADLINE_LANGUAGE = ("rouge_l", "minilm_cosine")

_URGENCY_TIERS: dict[float, tuple[str, ...]] = {
    1.0: ("Pneumothorax",),
    0.5: ("Enlarged Cardiomediastinum", "Lung Lesion", "Edema", "Consolidation", "Pneumonia",
          "Pleural Effusion", "Fracture"),
    0.25: ("Cardiomegaly", "Lung Opacity", "Atelectasis", "Pleural Other", "Support Devices"),
    0.0: ("No Finding",),
}  # fmt: skip
CLINICAL_WEIGHT = {name: weight for weight, names in _URGENCY_TIERS.items() for name in names}
"""What a missed or false finding costs a patient, on the urgency scale CRIMSON weighs errors by
(1 / 0.5 / 0.25 / 0; arXiv 2603.06183); which finding sits where is this project's call. 1: a
critical result to be called in at once; 0.5: changes management soon; 0.25: seldom acted on at
once; 0: "No Finding", whose error comes with one on a finding that carries the weight."""
CRITICAL = _URGENCY_TIERS[1.0]

Progress = Callable[[str, int], None]
"""Called with a stage name and how many studies it just finished."""


@dataclass(frozen=True)
class WorstStudy:
    """One of the worst studies with what the page shows about it."""

    study_id: str
    draft: LabeledReport
    reference: LabeledReport | None
    disagreements: dict[str, list[int | None]]
    f1_changing: list[str]
    clinical_weight: float


@dataclass
class AuditReport:
    """Numbers for the JSON, plus the labelled texts of the worst studies for the HTML."""

    numbers: dict[str, Any]
    word_counts: dict[str, list[int]] = field(default_factory=dict)
    worst: list[WorstStudy] = field(default_factory=list)


def planned_work(data: AuditInput) -> int:
    """How many study steps ``run_audit`` reports to its progress callback, for a bar's total."""
    drafted = len(data.drafted)
    return drafted + (len(data.study_ids) + drafted if data.reference is not None else 0)


def _label_in_batches(texts: Sequence[str], stage: str, progress: Progress) -> list[LabeledReport]:
    out: list[LabeledReport] = []
    for start in range(0, len(texts), LABEL_BATCH):
        batch = texts[start : start + LABEL_BATCH]
        out.extend(label_with_evidence(batch))
        progress(stage, len(batch))
    return out


def _label_drafts(data: AuditInput, progress: Progress) -> list[LabeledReport | None]:
    """Each study's labelled draft, None where it is missing."""
    drafted = data.drafted
    labelled = _label_in_batches(
        [str(data.generated[i]) for i in drafted], "labelling drafts", progress
    )
    reports: list[LabeledReport | None] = [None] * len(data.study_ids)
    for index, report in zip(drafted, labelled, strict=True):
        reports[index] = report
    return reports


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


def f1_changing(pred: NDArray[np.float64], ref: NDArray[np.float64]) -> NDArray[np.bool_]:
    """(n, 14): where the two sides binarise differently under the headline convention, so the
    disagreement moves a true/false positive/negative count and with it the label F1."""
    return binarize(pred, HEADLINE_UNCERTAIN_AS) != binarize(ref, HEADLINE_UNCERTAIN_AS)


def _label_numbers(pred: NDArray[np.float64], ref: NDArray[np.float64], n_resamples: int) -> dict:
    intervals: dict[str, dict[str, dict[str, float]]] = {}
    aggregate_intervals: dict[str, dict[str, float]] = {}
    for uncertain_as in (0, 1):
        found = f1_intervals(pred, ref, uncertain_as, n_resamples)
        intervals[f"unc{uncertain_as}"] = {name: found[name].as_dict() for name in OBSERVATIONS}
        for aggregate in AGGREGATES:
            key = f"{DEFAULT_PREFIX}_{aggregate}_unc{uncertain_as}"
            aggregate_intervals[key] = found[aggregate].as_dict()
    return {
        "label_f1": f1_variants(pred, ref),
        "label_f1_intervals": aggregate_intervals,
        "per_label": {f"unc{u}": per_label(pred, ref, u) for u in (0, 1)},
        "intervals": intervals,
    }


def _language_numbers(
    generated: list[str], reference: list[str], groups: Sequence[str], n_resamples: int
) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, list[float]]]:
    """Corpus values, intervals and per-study values of the drafted studies against theirs."""
    scored = score_detailed(generated, reference, groups)
    intervals = {
        key: bootstrap_ci(mean_of(np.array(values)), len(values), n_resamples).as_dict()
        for key, values in scored.samples.items()
        if key in MEAN_OF_SAMPLES
    }
    return scored.corpus, intervals, scored.samples


def headline(numbers: dict[str, Any]) -> dict[str, Any]:
    """The cards: the four label F1 aggregates under one convention and the per-study language
    means, each with its interval."""
    intervals = {**numbers["label_f1_intervals"], **numbers.get("language_intervals", {})}
    keys = [f"{DEFAULT_PREFIX}_{a}_unc{HEADLINE_UNCERTAIN_AS}" for a in AGGREGATES]
    keys += [key for key in HEADLINE_LANGUAGE if key in intervals]
    return {
        "convention": HEADLINE_CONVENTION,
        "cards": [{"key": k, "name": metric_name(k), **intervals[k]} for k in keys],
    }


def _per_study(
    data: AuditInput,
    gen_labels: list[Labels],
    ref_labels: list[Labels],
    changing: NDArray[np.bool_],
    samples: dict[str, list[float]],
) -> list[dict[str, Any]]:
    drafted_position = {index: position for position, index in enumerate(data.drafted)}
    weights = changing @ np.array([CLINICAL_WEIGHT[name] for name in OBSERVATIONS])
    rows = []
    for i, study_id in enumerate(data.study_ids):
        position = drafted_position.get(i)
        rows.append(
            {
                "study_id": study_id,
                "draft": "missing" if position is None else "drafted",
                "label_disagreements": _disagreements(gen_labels[i], ref_labels[i]),
                "f1_disagreements": [
                    n for n, c in zip(OBSERVATIONS, changing[i], strict=True) if c
                ],
                "clinical_weight": float(weights[i]),
                **{
                    name: None if position is None else values[position]
                    for name, values in samples.items()
                },
            }
        )
    return rows


def _worst(
    data: AuditInput,
    rows: list[dict[str, Any]],
    gen_reports: list[LabeledReport | None],
    ref_reports: list[LabeledReport] | None,
) -> list[WorstStudy]:
    """Drafted studies only: a missing draft is listed on its own, not as a bad draft."""

    def badness(i: int) -> tuple[int, float, float]:
        row = rows[i]
        return (-len(row["f1_disagreements"]), -row["clinical_weight"], row.get("rouge_l") or 0.0)

    worst = []
    for i in sorted(data.drafted, key=badness)[:WORST_COUNT]:
        draft = gen_reports[i]
        assert draft is not None
        worst.append(
            WorstStudy(
                data.study_ids[i],
                draft,
                ref_reports[i] if ref_reports is not None else None,
                rows[i]["label_disagreements"],
                rows[i]["f1_disagreements"],
                rows[i]["clinical_weight"],
            )
        )
    return worst


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
        Language metric groups to compute when reference reports exist; checked before any
        labelling, so a typo costs nothing.
    n_resamples : int
        Bootstrap resamples for the intervals.
    progress : callable, optional
        Receives (stage, studies done) for a progress bar (``planned_work`` is the total).

    Raises
    ------
    MetricInputError
        An unknown metric group.
    """
    language_groups = [m for m in chosen_groups(metrics) if m != "labels"]
    tick = progress or (lambda stage, done: None)
    gen_reports = _label_drafts(data, tick)
    ref_reports = (
        _label_in_batches(data.reference, "labelling references", tick)
        if data.reference is not None
        else None
    )
    gen_labels = [r.labels if r else dict.fromkeys(OBSERVATIONS) for r in gen_reports]
    ref_labels = data.truth if data.truth is not None else [r.labels for r in ref_reports or []]
    pred, ref = label_matrix(gen_labels), label_matrix(ref_labels)
    drafted_texts = [str(data.generated[i]) for i in data.drafted]
    numbers: dict[str, Any] = {
        "mode": data.mode,
        "labeler": "CheXpert-rule labeler (clinical_eval); not CheXbert",
        "n_studies": len(data.study_ids),
        "n_drafted": len(data.drafted),
        "missing_drafts": data.missing,
        "drafts_left_out": data.left_out,
        **_label_numbers(pred, ref, n_resamples),
        "confusion": confusion(gen_labels, ref_labels),
        "length": {"generated": length_stats(drafted_texts)},
        "repetition": {"generated": repetition_stats(drafted_texts)},
    }
    samples: dict[str, list[float]] = {}
    if data.reference is not None:
        numbers["length"]["reference"] = length_stats(data.reference)
        numbers["repetition"]["reference"] = repetition_stats(data.reference)
        if language_groups:
            references = [data.reference[i] for i in data.drafted]
            language, intervals, samples = _language_numbers(
                drafted_texts, references, language_groups, n_resamples
            )
            numbers["language"], numbers["language_intervals"] = language, intervals
        tick("language metrics", len(data.drafted))
    if data.confidence is not None:
        drafted_labels = [ref_labels[i] for i in data.drafted]
        numbers["calibration"] = calibration_by_label(data.confidence, drafted_labels)
    numbers["headline"] = headline(numbers)
    numbers["names"] = {k: metric_name(k) for k in [*numbers["label_f1"], *samples]}
    numbers["names"].update({k: metric_name(k) for k in numbers.get("language", {})})
    rows = _per_study(data, gen_labels, ref_labels, f1_changing(pred, ref), samples)
    numbers["samples"] = rows
    report = AuditReport(numbers, {"draft": [len(_words(t)) for t in drafted_texts]})
    if data.reference is not None:
        report.word_counts["reference"] = [len(_words(t)) for t in data.reference]
    report.worst = _worst(data, rows, gen_reports, ref_reports)
    numbers["worst_study_ids"] = [study.study_id for study in report.worst]
    return report


def write_outputs(out_dir: Path, report: AuditReport, html: str) -> tuple[Path, Path]:
    """Write ``audit.json`` and ``audit.html``; each appears whole or not at all.

    They get the mode of any new file (the umask decides), as the drafts do: an audit is for a
    quality team to read, not for its author alone.
    """
    from dicom.bundle import write_atomically

    out_dir.mkdir(parents=True, exist_ok=True)
    document = json.dumps(report.numbers, indent=2, allow_nan=False)
    json_path = write_atomically(out_dir / "audit.json", document.encode("utf-8"))
    html_path = write_atomically(out_dir / "audit.html", html.encode("utf-8"))
    return json_path, html_path
