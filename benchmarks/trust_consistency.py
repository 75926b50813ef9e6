"""Consistency flags of the drafts on the phantom test split, and two cheap repairs.

Run: ``.venv/bin/python benchmarks/trust_consistency.py [--test 500]``.
Writes ``benchmarks/results/trust_consistency.{md,json}``.

The drafts of AR (``ar-tiny``) and the default one-step engine (``dcd-b4``) on test studies
read through DICOM carry the flags ``ReportGenerator`` computes (``model/trust_stats.py``):
``sections`` (negated in one section, asserted in the other), ``unsupported`` (asserted while
the calibrated head gives under the floor), ``overlooked`` (negated while it gives over the
ceiling). Each flag is scored against the phantom's ground truth: a ``sections`` flag names a
real contradiction by construction, and the table says which section was right;
``unsupported`` is right when the observation is absent, ``overlooked`` when it is present.

Two rules that need no second decoding are then applied to every draft, and the drafts are
labelled again (macro-F1 on the full text, flagged drafts):

- ``impression-follows-findings``: drop impression sentences that contradict the findings;
- ``drop-unsupported``: drop sentences that assert an observation the head calls unlikely.
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trust_results import arguments, write_results  # noqa: E402

import model  # noqa: E402
from clinical_eval import label, label_f1  # noqa: E402
from model.cli import DEFAULT_CACHE  # noqa: E402
from model.data.datasets import phantom_records  # noqa: E402
from model.report import Report  # noqa: E402
from model.trust_fit import split_inputs  # noqa: E402
from model.trust_stats import ASSERTED, NEGATED  # noqa: E402

RUNS = (("ar-tiny", "ar"), ("dcd-b4", "diffusion-onestep"))
MACRO = "chexpert_rule_f1_macro14_unc0"
SENTENCE = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    return [s for s in SENTENCE.split(text.strip()) if s]


def without(text: str, drop: dict[str, int]) -> str:
    """``text`` without the sentences that give an observation of ``drop`` its value."""
    parts = sentences(text)
    if not parts:
        return text
    kept = [
        part
        for part, found in zip(parts, label(parts), strict=True)
        if not any(found.get(name) == value for name, value in drop.items())
    ]
    return " ".join(kept)


def repaired(report: Report, rule: str) -> str:
    """The draft's text after one rule, from its own flags."""
    assert report.trust is not None
    flags = report.trust.consistency_flags
    findings, impression = report.findings, report.impression
    if rule == "impression-follows-findings":
        findings_labels = label([findings])[0]
        drop = {
            f.observation: ASSERTED if findings_labels.get(f.observation) == NEGATED else NEGATED
            for f in flags
            if f.kind == "sections"
        }
        impression = without(impression, drop)
    elif rule == "drop-unsupported":
        drop = {f.observation: ASSERTED for f in flags if f.kind == "unsupported"}
        findings, impression = without(findings, drop), without(impression, drop)
    return f"FINDINGS: {findings}\nIMPRESSION: {impression}"


def flag_scores(reports: list[Report], references: list[dict[str, Any]]) -> dict[str, Any]:
    """Flagged drafts by kind, and how often each kind is right by the ground truth."""
    drafts: collections.Counter[str] = collections.Counter()
    flags: collections.Counter[str] = collections.Counter()
    right: collections.Counter[str] = collections.Counter()
    observations: collections.Counter[str] = collections.Counter()
    for report, truth in zip(reports, references, strict=True):
        assert report.trust is not None
        kinds = {f.kind for f in report.trust.consistency_flags}
        drafts.update(kinds | ({"any"} if kinds else set()))
        for flag in report.trust.consistency_flags:
            flags[flag.kind] += 1
            observations[f"{flag.kind}: {flag.observation}"] += 1
            present = truth.get(flag.observation) == 1
            if flag.kind == "sections":
                impression_asserts = "asserted in the impression" in flag.detail
                right["sections (impression right)"] += impression_asserts == present
            else:
                right[flag.kind] += present == (flag.kind == "overlooked")
    return {
        "drafts_flagged": dict(drafts),
        "flags": dict(flags),
        "flags_right": dict(right),
        "by_observation": dict(observations.most_common(12)),
    }


def measure(test_n: int, cache: Path) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    pixels, _ = split_inputs(cache, 0, test_n, "test", 128)
    references = [record.labels for record in phantom_records(0, test_n, "test")]
    result: dict[str, Any] = {"studies": test_n, "runs": {}}
    for checkpoint, engine in RUNS:
        reports = model.load(model.CHECKPOINTS / checkpoint, engine).generate(pixels)
        labels = [r.labels for r in reports]
        run: dict[str, Any] = {
            "macro_f1_14": label_f1(labels, references)[MACRO],  # type: ignore[arg-type]
            **flag_scores(reports, references),
            "rules": {},
        }
        for rule in ("impression-follows-findings", "drop-unsupported"):
            texts = [repaired(r, rule) for r in reports]
            changed = sum(t != r.text for t, r in zip(texts, reports, strict=True))
            run["rules"][rule] = {
                "drafts_changed": changed,
                "macro_f1_14": label_f1(label(texts), references)[MACRO],
            }
        result["runs"][f"{checkpoint} {engine}"] = run
    return result


def markdown(result: dict[str, Any]) -> str:
    n = result["studies"]
    lines = [
        "# Consistency flags on the phantom test split",
        "",
        f"{n} test studies read through DICOM; flags from `model/trust_stats.py` (floor 0.10, "
        "ceiling 0.95 on the calibrated head). Macro-F1 (14) against the phantom labels.",
        "",
        "| engine | macro-F1 | drafts flagged | sections | unsupported | overlooked |",
        "|---|---|---|---|---|---|",
    ]
    for name, run in result["runs"].items():
        drafts = run["drafts_flagged"]
        cells = [str(drafts.get(k, 0)) for k in ("any", "sections", "unsupported", "overlooked")]
        lines.append(f"| {name} | {run['macro_f1_14']:.3f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Are the flags right? (by the phantom ground truth)",
        "",
        "| engine | flag kind | flags | right |",
        "|---|---|---|---|",
    ]
    for name, run in result["runs"].items():
        for kind, count in run["flags"].items():
            key = "sections (impression right)" if kind == "sections" else kind
            lines.append(f"| {name} | {key} | {count} | {run['flags_right'].get(key, 0)} |")
    lines += [
        "",
        "## Repairs without a second decoding",
        "",
        "| engine | rule | drafts changed | macro-F1 | − as drafted |",
        "|---|---|---|---|---|",
    ]
    for name, run in result["runs"].items():
        for rule, row in run["rules"].items():
            lines.append(
                f"| {name} | {rule} | {row['drafts_changed']} | {row['macro_f1_14']:.3f} | "
                f"{row['macro_f1_14'] - run['macro_f1_14']:+.3f} |"
            )
    lines += ["", "Most frequent flags:", ""]
    for name, run in result["runs"].items():
        top = ", ".join(f"{k} ({v})" for k, v in run["by_observation"].items())
        lines.append(f"- {name}: {top or 'none'}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = arguments(__doc__, ROOT / DEFAULT_CACHE, checkpoint=False)
    parser.add_argument("--test", type=int, default=500)
    args = parser.parse_args()
    result = measure(args.test, args.cache_dir)
    write_results("trust_consistency", result, markdown)


if __name__ == "__main__":
    main()
