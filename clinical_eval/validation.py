"""The hand-labelled validation set of the labeler (``validation_data/``) and its scoring.

The set was written for this project in the phrasing of several institutions and labelled by the
conventions in ``validation_data/README.md``. It has two splits: ``development``, which the rules
were tuned on, and ``heldout``, written before the issue-31 rules and never tuned on; only the
held-out numbers estimate accuracy on unseen text.

Scores are the ones a report-level benchmark uses: labels binarised with uncertain as negative
(``unc0``) or as positive (``unc1``), then per-observation precision, recall and F1 (see
``label_metrics.per_label``). ``benchmarks/labeler_quality.py`` writes the tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources

from clinical_eval.label_metrics import label_matrix, per_label
from clinical_eval.labeler import Labels, label
from clinical_eval.observations import OBSERVATIONS

CODES: dict[str, str] = {
    "NF": "No Finding",
    "EC": "Enlarged Cardiomediastinum",
    "CM": "Cardiomegaly",
    "LO": "Lung Opacity",
    "LL": "Lung Lesion",
    "ED": "Edema",
    "CO": "Consolidation",
    "PN": "Pneumonia",
    "AT": "Atelectasis",
    "PX": "Pneumothorax",
    "EF": "Pleural Effusion",
    "PO": "Pleural Other",
    "FX": "Fracture",
    "SD": "Support Devices",
}
"""Two-letter codes of the data files: short enough that a label line stays readable."""

VALUES: dict[str, int] = {"+": 1, "-": 0, "?": -1}
SPLITS: tuple[str, ...] = ("development", "heldout")
KINDS: tuple[str, ...] = ("sentences", "reports")
_REPORT_HEADER = re.compile(r"== (\S+) (\S+)$")


@dataclass(frozen=True)
class Example:
    """One labelled sentence or report."""

    id: str
    split: str
    kind: str
    style: str
    text: str
    labels: Labels


def parse_labels(field: str, where: str) -> Labels:
    """``"CM+ EF?"`` as a 14-key dict; unlisted observations are blank.

    Raises
    ------
    ValueError
        On an unknown code or value, or an observation listed twice, naming ``where``.
    """
    labels: Labels = dict.fromkeys(OBSERVATIONS)
    for item in field.split():
        code, value = item[:2], item[2:]
        if code not in CODES or value not in VALUES:
            raise ValueError(f"{where}: {item!r} is not a code from {sorted(CODES)} + one of +-?")
        if labels[CODES[code]] is not None:
            raise ValueError(f"{where}: {CODES[code]} is labelled twice")
        labels[CODES[code]] = VALUES[value]
    return labels


def _lines(name: str) -> Iterator[tuple[int, str]]:
    text = resources.files("clinical_eval.validation_data").joinpath(name).read_text("utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.startswith("#"):
            yield number, line


def _sentences(split: str) -> list[Example]:
    name = f"sentences_{split}.txt"
    examples = []
    for number, line in _lines(name):
        if line.strip():
            field, _, text = line.partition("|")
            labels = parse_labels(field, f"{name}:{number}")
            examples.append(
                Example(f"{name}:{number}", split, "sentence", "", text.strip(), labels)
            )
    return examples


def _reports(split: str) -> list[Example]:
    name = f"reports_{split}.txt"
    blocks: list[tuple[int, str, str, list[str]]] = []
    for number, line in _lines(name):
        header = _REPORT_HEADER.match(line)
        if header:
            blocks.append((number, header.group(1), header.group(2), []))
        elif blocks:
            blocks[-1][3].append(line)
    examples = []
    for number, report_id, style, body in blocks:
        if not body or not body[0].startswith("labels:"):
            raise ValueError(f"{name}:{number + 1}: a report starts with a 'labels:' line")
        labels = parse_labels(body[0].removeprefix("labels:"), f"{name}:{number + 1}")
        text = "\n".join(body[1:]).strip()
        examples.append(Example(report_id, split, "report", style, text, labels))
    return examples


def load_examples() -> list[Example]:
    """Every example: development sentences and reports, then the held-out ones."""
    return [example for split in SPLITS for example in _sentences(split) + _reports(split)]


def split_examples(examples: Sequence[Example], split: str, kind: str = "") -> list[Example]:
    """The examples of one split ("development" or "heldout"), optionally of one kind."""
    return [e for e in examples if e.split == split and (not kind or e.kind == kind)]


def evaluate(
    examples: Sequence[Example], predicted: Sequence[Labels] | None = None
) -> dict[int, dict[str, dict[str, float]]]:
    """Per-observation precision / recall / F1 / support / fp / fn, for unc0 and unc1.

    ``predicted`` defaults to this package's labeler; pass another system's labels to compare.
    """
    rows = list(predicted) if predicted is not None else label([e.text for e in examples])
    pred, gold = label_matrix(rows), label_matrix([e.labels for e in examples])
    return {uncertain_as: per_label(pred, gold, uncertain_as) for uncertain_as in (0, 1)}


def disagreements(
    examples: Sequence[Example], predicted: Sequence[Labels] | None = None
) -> list[tuple[Example, dict[str, tuple[int | None, int | None]]]]:
    """Examples whose labels differ from the gold ones: observation -> (gold, predicted)."""
    rows = list(predicted) if predicted is not None else label([e.text for e in examples])
    found = []
    for example, row in zip(examples, rows, strict=True):
        diff = {n: (example.labels[n], row[n]) for n in OBSERVATIONS if example.labels[n] != row[n]}
        if diff:
            found.append((example, diff))
    return found
