"""Quality of the CheXpert-rule labeler per observation, against a keyword-plus-negation baseline.

Three sets: the hand-labelled validation set's two splits (``clinical_eval/validation_data``;
the rules were tuned on ``development`` only) and phantom reports against the generator's truth.
Labels are binarised with uncertain as negative (unc0) or positive (unc1), as report-level
benchmarks do, and scored per observation. The baseline is the crude labeler the issue compares
against: a few keywords per observation, negated by "no"/"not"/"without"/"negative" earlier in
the sentence and hedged by a few words, so that a gain over it is visible on our own data too.

Macro means are given over all 14 observations, the CheXpert five and two guesses at the eight
that a hidden real set scores (the five plus pneumothorax, pneumonia and one of lung lesion /
lung opacity). The phantom's truth does not propagate Lung Opacity from its children, so the
phantom is scored with ``labeler.with_parents`` applied to its truth: the same convention both
sides.

Run: ``nice -n 10 .venv/bin/python benchmarks/labeler_quality.py [--tag before]``
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from clinical_eval.labeler import Labels, label, with_parents
from clinical_eval.observations import FIVE_COMPETITION, OBSERVATIONS
from clinical_eval.validation import Example, evaluate, load_examples, split_examples

RESULTS = Path(__file__).resolve().parent / "results"
PHANTOM_SEED, PHANTOM_STUDIES = 11, 1000
MACRO_SETS: dict[str, tuple[str, ...]] = {
    "14": OBSERVATIONS,
    "5": FIVE_COMPETITION,
    "8 (lesion)": (*FIVE_COMPETITION, "Pneumothorax", "Pneumonia", "Lung Lesion"),
    "8 (opacity)": (*FIVE_COMPETITION, "Pneumothorax", "Pneumonia", "Lung Opacity"),
}
_BASELINE_WORDS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": ("mediastin",),
    "Cardiomegaly": ("cardiomegaly", "heart"),
    "Lung Opacity": ("opacit", "infiltrat", "airspace"),
    "Lung Lesion": ("nodul", "mass", "lesion"),
    "Edema": ("edema", "oedema", "congestion"),
    "Consolidation": ("consolidat",),
    "Pneumonia": ("pneumonia", "infection"),
    "Atelectasis": ("atelecta", "collapse"),
    "Pneumothorax": ("pneumothora",),
    "Pleural Effusion": ("effusion",),
    "Pleural Other": ("pleural thickening", "plaque"),
    "Fracture": ("fracture",),
    "Support Devices": ("tube", "catheter", "line", "pacemaker", "wires"),
}
_BASELINE_NEGATION = re.compile(r"\b(no|not|without|negative|clear)\b")
_BASELINE_HEDGE = re.compile(r"\b(may|possible|possibly|likely|cannot|suspicious|versus|or)\b")


def keyword_baseline(texts: list[str]) -> list[Labels]:
    """The crude comparison labeler: keyword, then negation or hedge earlier in the sentence."""
    rows = []
    for text in texts:
        found: dict[str, list[int]] = {}
        for sentence in re.split(r"[.\n;]", text.lower()):
            for name, words in _BASELINE_WORDS.items():
                at = min((sentence.find(w) for w in words if w in sentence), default=-1)
                if at >= 0:
                    before = sentence[:at]
                    value = (
                        0
                        if _BASELINE_NEGATION.search(before)
                        else -1
                        if _BASELINE_HEDGE.search(sentence)
                        else 1
                    )
                    found.setdefault(name, []).append(value)
        row: Labels = {name: None for name in OBSERVATIONS}
        for name, values in found.items():
            row[name] = 1 if 1 in values else -1 if -1 in values else 0
        abnormal = any(row[n] in (1, -1) for n in OBSERVATIONS[1:-1])
        row["No Finding"] = None if abnormal else 1
        rows.append(row)
    return rows


def macro(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """Macro F1 over each of ``MACRO_SETS``."""
    return {
        key: sum(scores[name]["f1"] for name in names) / len(names)
        for key, names in MACRO_SETS.items()
    }


def phantom_examples() -> list[Example]:
    """Phantom reports (mixed wording) with the generator's truth under the parent rule."""
    from model.data.phantom import iter_cases

    return [
        Example(
            case.study_id,
            "phantom",
            "report",
            "phantom",
            case.report.text,
            with_parents(case.labels),
        )
        for case in iter_cases(PHANTOM_SEED, PHANTOM_STUDIES)
    ]


def score_set(examples: list[Example]) -> dict[str, Any]:
    """Labeler and baseline scores of one set, both conventions."""
    texts = [e.text for e in examples]
    out: dict[str, Any] = {"n": len(examples)}
    for system, rows in (("labeler", label(texts)), ("baseline", keyword_baseline(texts))):
        per = evaluate(examples, rows)
        out[system] = {f"unc{u}": {"per_label": per[u], "macro": macro(per[u])} for u in (0, 1)}
    return out


def table(title: str, result: dict[str, Any]) -> list[str]:
    """Markdown: per-observation F1 (and support, fp, fn) of the labeler, baseline F1 beside."""
    lines = [
        f"### {title} ({result['n']} examples)",
        "",
        "| observation | support unc0 | F1 unc0 | fp / fn unc0 | baseline F1 unc0 "
        "| support unc1 | F1 unc1 | fp / fn unc1 | baseline F1 unc1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ours, base = result["labeler"], result["baseline"]
    for name in OBSERVATIONS:
        cells = []
        for u in ("unc0", "unc1"):
            s, b = ours[u]["per_label"][name], base[u]["per_label"][name]
            cells += [
                str(s["support"]),
                f"{s['f1']:.3f}",
                f"{s['fp']} / {s['fn']}",
                f"{b['f1']:.3f}",
            ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for key in MACRO_SETS:
        cells = []
        for u in ("unc0", "unc1"):
            cells += ["", f"**{ours[u]['macro'][key]:.3f}**", "", f"{base[u]['macro'][key]:.3f}"]
        lines.append(f"| macro-{key} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def main() -> None:
    """Score the three sets; write labeler_quality[_TAG].md and .json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="", help="suffix of the result files, e.g. 'before'")
    args = parser.parse_args()
    examples = load_examples()
    sets = {
        "held-out split (never tuned on)": split_examples(examples, "heldout"),
        "held-out reports only": split_examples(examples, "heldout", "report"),
        "development split (tuned on)": split_examples(examples, "development"),
        f"phantom reports (seed {PHANTOM_SEED}, first {PHANTOM_STUDIES})": phantom_examples(),
    }
    results = {title: score_set(subset) for title, subset in sets.items()}
    stem = "labeler_quality" + (f"_{args.tag}" if args.tag else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [
        "# CheXpert-rule labeler quality per observation",
        "",
        "Produced by `benchmarks/labeler_quality.py`. Binarised labels, uncertain as negative "
        "(unc0) or positive (unc1); support = gold positives; fp / fn = false positives / "
        "negatives. Baseline = keyword plus negation (see the script). Macro-8 are guesses at the "
        "hidden set's eight observations.",
        "",
    ]
    for title, result in results.items():
        lines += table(title, result)
    (RESULTS / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
