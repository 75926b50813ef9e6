"""Language metrics from the maintained packages, each named by the convention it implements.

Every key is on a 0-1 scale.

- ``bleu1``..``bleu4``, ``meteor``, ``rouge_l``, ``cider_d``: pycocoevalcap (the R2Gen lineage):
  corpus BLEU with the "closest" reference length and no smoothing, METEOR 1.5 (Java), ROUGE-L as
  an LCS F-measure with beta = 1.2 averaged over samples, CIDEr-D with sigma = 6 and document
  frequencies from the scored references (so it depends on the test set). Texts are tokenised
  the way pycocoevalcap's ``PTBTokenizer`` does (lower case, punctuation dropped, hyphenated
  words, decimals and "s/p" kept whole, "n't" split off, brackets as ``-lrb-``), in Python:
  the Java tokenizer would start a JVM per call. ``tests/clinical_eval/test_language.py`` checks
  the two agree to 1e-3.
- ``sacrebleu_bleu``: sacrebleu corpus BLEU (13a tokenisation, exponential smoothing, case
  kept), divided by 100 so that it sits on the same 0-1 scale as ``bleu4``; sacrebleu itself
  prints 0-100.
- ``rouge_l_rougescore_f1``: rouge-score's ROUGE-L F1 (its own tokeniser: lower case,
  non-alphanumerics as spaces; beta = 1, no stemming); it disagrees with pycocoevalcap's
  ``rouge_l`` on purpose, which is why both carry their names.
- ``minilm_cosine``: mean cosine of all-MiniLM-L6-v2 sentence embeddings (see ``embedding``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from clinical_eval.errors import MetricInputError

_TOKEN = re.compile(r"n't|'(?:s|re|ve|ll|d|m)\b|[a-z0-9]+(?:[-./][a-z0-9]+)*|[()\[\]{}]")
_NOT = re.compile(r"(?<=[a-z])n't\b")
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}


def tokenize(text: str) -> str:
    """pycocoevalcap's PTB tokenisation, lower-cased and without punctuation, joined by spaces."""
    lowered = _NOT.sub(" n't", text.lower())
    return " ".join(_BRACKETS.get(token, token) for token in _TOKEN.findall(lowered))


def check_pairs(generated: Sequence[str], reference: Sequence[str]) -> None:
    """Refuse inputs that would silently score wrong: unequal lengths, nothing, non-strings."""
    if isinstance(generated, str) or isinstance(reference, str):
        raise MetricInputError("pass lists of reports, not single strings: wrap them in a list")
    if len(generated) != len(reference):
        raise MetricInputError(
            f"{len(generated)} generated reports but {len(reference)} references; "
            "they must pair up one to one"
        )
    if not generated:
        raise MetricInputError("no reports to score")
    bad = [i for i, t in enumerate([*generated, *reference]) if not isinstance(t, str)]
    if bad:
        raise MetricInputError(f"non-text entries at positions {bad[:10]}: pass strings")


def _coco_inputs(
    generated: Sequence[str], reference: Sequence[str]
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    gts = {i: [tokenize(text)] for i, text in enumerate(reference)}
    res = {i: [tokenize(text)] for i, text in enumerate(generated)}
    return gts, res


def coco_bleu(generated: Sequence[str], reference: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU-1..4, pycocoevalcap convention (0-1 scale)."""
    from pycocoevalcap.bleu.bleu import Bleu

    check_pairs(generated, reference)
    scores, _ = Bleu(4).compute_score(*_coco_inputs(generated, reference), verbose=0)
    return {f"bleu{n + 1}": float(value) for n, value in enumerate(scores)}


def coco_rouge_l(generated: Sequence[str], reference: Sequence[str]) -> tuple[float, list[float]]:
    """pycocoevalcap ROUGE-L (beta = 1.2): the mean and the per-sample scores."""
    from pycocoevalcap.rouge.rouge import Rouge

    check_pairs(generated, reference)
    mean, per_sample = Rouge().compute_score(*_coco_inputs(generated, reference))
    return float(mean), [float(v) for v in per_sample]


def coco_cider_d(generated: Sequence[str], reference: Sequence[str]) -> float:
    """CIDEr-D as pycocoevalcap computes it (its ``Cider`` class is the CIDEr-D variant)."""
    from pycocoevalcap.cider.cider import Cider

    check_pairs(generated, reference)
    mean, _ = Cider().compute_score(*_coco_inputs(generated, reference))
    return float(mean)


def _stop_meteor(scorer: Any) -> None:
    """End the METEOR JVM now rather than at garbage collection (it holds up to 2 GB)."""
    scorer.meteor_p.stdin.close()
    scorer.meteor_p.kill()
    scorer.meteor_p.wait()


def coco_meteor(generated: Sequence[str], reference: Sequence[str]) -> tuple[float, list[float]]:
    """METEOR 1.5 through pycocoevalcap's bundled jar (needs ``java`` on PATH)."""
    import shutil

    from pycocoevalcap.meteor.meteor import Meteor

    check_pairs(generated, reference)
    if shutil.which("java") is None:
        raise MetricInputError("METEOR needs a Java runtime: install default-jre-headless")
    scorer = Meteor()
    try:
        mean, per_sample = scorer.compute_score(*_coco_inputs(generated, reference))
    finally:
        _stop_meteor(scorer)
    return float(mean), [float(v) for v in per_sample]


def sacrebleu_bleu(generated: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """sacrebleu corpus BLEU against one or more reference streams, on a 0-1 scale.

    sacrebleu reports 0-100; dividing by 100 puts it beside ``bleu4`` without changing it.
    """
    import sacrebleu

    for stream in references:
        check_pairs(generated, stream)
    streams = [list(s) for s in references]
    return float(sacrebleu.corpus_bleu(list(generated), streams).score) / 100


def rouge_score_l(generated: Sequence[str], reference: Sequence[str]) -> list[float]:
    """rouge-score ROUGE-L F1 per sample (beta = 1, no stemming)."""
    from rouge_score import rouge_scorer

    check_pairs(generated, reference)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pairs = zip(generated, reference, strict=True)
    return [scorer.score(ref, gen)["rougeL"].fmeasure for gen, ref in pairs]
