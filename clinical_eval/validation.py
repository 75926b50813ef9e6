"""Scores the labeler against the hand-labelled validation set shipped in ``data/validation.jsonl``.

The set was written for this project in hospital phrasing and labelled by the CheXpert conventions
(uncertain for "cannot be excluded", negative for "no X or Y", uncertain heart size when
"stable"). It has two splits: ``development`` (335 sentences, 42 short reports), which the rules
were tuned on, and ``heldout`` (89 sentences), written after the tuning and never tuned on; only
the held-out numbers estimate accuracy on unseen text. Per label a prediction counts as correct only
when its value (1, 0 or -1) equals the gold value, so precision is correct / predicted mentions
and recall is correct / gold mentions; blank-on-both-sides pairs are not counted.

Run ``python -m clinical_eval.validation`` to rewrite benchmarks/results/labeler_validation.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from clinical_eval.labeler import Labels, label
from clinical_eval.observations import OBSERVATIONS

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "labeler_validation.md"


@dataclass(frozen=True)
class Example:
    """One labelled sentence or report."""

    id: str
    split: str
    kind: str
    text: str
    labels: Labels


@dataclass(frozen=True)
class LabelScore:
    """Agreement on one observation."""

    precision: float
    recall: float
    f1: float
    gold_mentions: int
    predicted_mentions: int


def load_examples() -> list[Example]:
    """The validation set, in file order."""
    text = resources.files("clinical_eval").joinpath("data/validation.jsonl").read_text("utf-8")
    return [Example(**json.loads(line)) for line in text.splitlines() if line.strip()]


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def score_label(predicted: list[int | None], gold: list[int | None]) -> LabelScore:
    """Value-exact precision/recall/F1 over the mentions of one observation."""
    correct = sum(p is not None and p == g for p, g in zip(predicted, gold, strict=True))
    n_pred = sum(p is not None for p in predicted)
    n_gold = sum(g is not None for g in gold)
    precision, recall = _ratio(correct, n_pred), _ratio(correct, n_gold)
    f1 = _ratio(int(2 * precision * recall * 1e9), int((precision + recall) * 1e9))
    return LabelScore(precision, recall, f1, n_gold, n_pred)


def evaluate(examples: list[Example]) -> dict[str, LabelScore]:
    """Per-observation scores of ``label`` on the given examples."""
    predicted = label([example.text for example in examples])
    return {
        name: score_label([p[name] for p in predicted], [e.labels[name] for e in examples])
        for name in OBSERVATIONS
    }


def disagreements(examples: list[Example]) -> list[tuple[Example, Labels]]:
    """Examples whose predicted labels differ from the gold ones, for error analysis."""
    predicted = label([example.text for example in examples])
    return [(e, p) for e, p in zip(examples, predicted, strict=True) if p != e.labels]


def split_examples(examples: list[Example], split: str) -> list[Example]:
    """The examples of one split ("development" or "heldout")."""
    return [example for example in examples if example.split == split]


def markdown_section(title: str, scores: dict[str, LabelScore], n_examples: int) -> str:
    """One results table."""
    lines = [
        f"## {title} ({n_examples} examples)",
        "",
        "| observation | gold mentions | predicted | precision | recall | F1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in scores.items():
        lines.append(
            f"| {name} | {s.gold_mentions} | {s.predicted_mentions} | {s.precision:.3f} | "
            f"{s.recall:.3f} | {s.f1:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Rewrite the results tables (write to a temp file, then rename)."""
    examples = load_examples()
    sections = [
        markdown_section(f"{split} split", evaluate(subset), len(subset))
        for split in ("heldout", "development")
        if (subset := split_examples(examples, split))
    ]
    header = (
        "# CheXpert-rule labeler: validation on the hand-labelled set\n\n"
        "Examples from `clinical_eval/data/validation.jsonl`. A prediction is correct when its "
        "value (1 / 0 / -1) equals the gold value; precision = correct / predicted mentions, "
        "recall = correct / gold mentions. The rules were tuned on the development split; the "
        "held-out split was written afterwards and is the honest estimate; one lexicon bug it "
        "exposed was fixed ('no longer seen' had been listed as a pseudo-trigger rather than a "
        "negation), so it is held out from tuning in every other respect. It is small (89 "
        "sentences, 3-18 mentions per label), so its per-label numbers are coarse. Regenerate with "
        "`python -m clinical_eval.validation`.\n\n"
    )
    table = header + "\n".join(sections)
    partial = RESULTS.with_suffix(".md.tmp")
    partial.write_text(table, encoding="utf-8")
    partial.replace(RESULTS)
    print(table)


if __name__ == "__main__":
    main()
