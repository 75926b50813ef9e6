"""``score``: every offline metric of generated against reference reports, by exact variant name.

Groups (pass a subset as ``metrics`` to skip slow ones, e.g. METEOR starts a JVM):

=============  ===========================================================================
``labels``     ``chexpert_rule_f1_{micro,macro}{14,5}_unc{0,1}``: labeler on both sides
``bleu``       ``bleu1``..``bleu4`` (pycocoevalcap corpus BLEU)
``rouge_l``    ``rouge_l`` (pycocoevalcap, beta 1.2) and ``rouge_l_rougescore_f1``
``meteor``     ``meteor`` (METEOR 1.5 via pycocoevalcap, Java)
``cider_d``    ``cider_d`` (pycocoevalcap CIDEr-D; depends on the test set's references)
``sacrebleu``  ``sacrebleu_bleu`` (13a, 0-1: sacrebleu's score / 100)
``minilm``     ``minilm_cosine`` (not SemScore, not SembScore)
=============  ===========================================================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from clinical_eval import language
from clinical_eval.embedding import minilm_cosines
from clinical_eval.errors import MetricInputError
from clinical_eval.label_metrics import label_f1
from clinical_eval.labeler import Labels, label

METRIC_GROUPS: tuple[str, ...] = (
    "labels",
    "bleu",
    "rouge_l",
    "meteor",
    "cider_d",
    "sacrebleu",
    "minilm",
)


@dataclass
class Scored:
    """Corpus numbers plus what each study contributed, for drill-down in audits."""

    corpus: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    generated_labels: list[Labels] = field(default_factory=list)
    reference_labels: list[Labels] = field(default_factory=list)


def chosen_groups(metrics: Iterable[str] | None) -> list[str]:
    """The metric groups asked for, all by default; an unknown name is refused here, so a caller
    can check its options before hours of labelling rather than after.

    Raises
    ------
    MetricInputError
        A name outside ``METRIC_GROUPS`` (listed with the valid ones), or an empty choice.
    """
    chosen = list(METRIC_GROUPS if metrics is None else metrics)
    unknown = sorted(set(chosen) - set(METRIC_GROUPS))
    if unknown:
        raise MetricInputError(
            f"unknown metric groups {unknown}; choose from {', '.join(METRIC_GROUPS)}"
        )
    if not chosen:
        raise MetricInputError(f"no metric group chosen; choose from {', '.join(METRIC_GROUPS)}")
    return chosen


_LANGUAGE_NAMES = {
    **{f"bleu{n}": f"BLEU-{n} (pycocoevalcap, corpus, 0-1)" for n in range(1, 5)},
    "rouge_l": "ROUGE-L (pycocoevalcap, beta = 1.2)",
    "rouge_l_rougescore_f1": "ROUGE-L F1 (rouge-score)",
    "meteor": "METEOR 1.5",
    "cider_d": "CIDEr-D (depends on the audited references)",
    "sacrebleu_bleu": "BLEU-4 (sacreBLEU, 13a tokens, 0-1)",
    "minilm_cosine": "MiniLM cosine similarity (not SemScore)",
}
_LABEL_KEY = re.compile(r"chexpert_rule_f1_(micro|macro)(14|5)_unc([01])")
_UNCERTAIN_AS = {"0": "negative", "1": "positive"}


def metric_name(key: str) -> str:
    """What a person calls the number stored under ``key``: keys name the exact variant for
    machines (``chexpert_rule_f1_micro14_unc0``), a quality team reads "Label F1, micro, 14
    findings, uncertain = negative". A key without a name is returned as it is."""
    label = _LABEL_KEY.fullmatch(key)
    if label:
        average, subset, uncertain = label.groups()
        findings = "14 findings" if subset == "14" else "5 competition findings"
        return f"Label F1, {average}, {findings}, uncertain = {_UNCERTAIN_AS[uncertain]}"
    return _LANGUAGE_NAMES.get(key, key)


def _add_labels(scored: Scored, generated: Sequence[str], reference: Sequence[str]) -> None:
    scored.generated_labels = label(generated)
    scored.reference_labels = label(reference)
    scored.corpus.update(label_f1(scored.generated_labels, scored.reference_labels))


def _add_rouge(scored: Scored, generated: Sequence[str], reference: Sequence[str]) -> None:
    scored.corpus["rouge_l"], scored.samples["rouge_l"] = language.coco_rouge_l(
        generated, reference
    )
    per_sample = language.rouge_score_l(generated, reference)
    scored.samples["rouge_l_rougescore_f1"] = per_sample
    scored.corpus["rouge_l_rougescore_f1"] = sum(per_sample) / len(per_sample)


def _add_meteor(scored: Scored, generated: Sequence[str], reference: Sequence[str]) -> None:
    scored.corpus["meteor"], scored.samples["meteor"] = language.coco_meteor(generated, reference)


def _add_minilm(scored: Scored, generated: Sequence[str], reference: Sequence[str]) -> None:
    per_sample = minilm_cosines(generated, reference)
    scored.samples["minilm_cosine"] = per_sample
    scored.corpus["minilm_cosine"] = sum(per_sample) / len(per_sample)


def score_detailed(
    generated: Sequence[str], reference: Sequence[str], metrics: Iterable[str] | None = None
) -> Scored:
    """Like ``score`` but keeps per-study values and both sides' labels."""
    language.check_pairs(generated, reference)
    scored = Scored()
    for group in chosen_groups(metrics):
        if group == "labels":
            _add_labels(scored, generated, reference)
        elif group == "bleu":
            scored.corpus.update(language.coco_bleu(generated, reference))
        elif group == "rouge_l":
            _add_rouge(scored, generated, reference)
        elif group == "meteor":
            _add_meteor(scored, generated, reference)
        elif group == "cider_d":
            scored.corpus["cider_d"] = language.coco_cider_d(generated, reference)
        elif group == "sacrebleu":
            scored.corpus["sacrebleu_bleu"] = language.sacrebleu_bleu(generated, [reference])
        else:
            _add_minilm(scored, generated, reference)
    return scored


def score(
    generated: Sequence[str], reference: Sequence[str], metrics: Iterable[str] | None = None
) -> dict[str, float]:
    """Score generated reports against references.

    Parameters
    ----------
    generated, reference : sequence of str
        Paired reports, one per study, same order.
    metrics : iterable of str, optional
        Metric groups from ``METRIC_GROUPS``; all of them by default.

    Returns
    -------
    dict
        Variant-named numbers (see the module docstring) plus ``n_studies``.

    Raises
    ------
    MetricInputError
        Unequal lengths, no studies, non-text entries or an unknown metric group.
    """
    corpus = score_detailed(generated, reference, metrics).corpus
    corpus["n_studies"] = float(len(generated))
    return corpus
