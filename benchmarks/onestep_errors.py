"""Where the one-step student loses macro-F1: which findings, and through which sentences.

Run: ``.venv/bin/python benchmarks/onestep_errors.py [--n 2000] [--student DIR]``;
``--compared DIR`` adds another one-step student as the row ``diffusion-onestep@compared``,
decoded with the engine options of ``--compared-option KEY=VALUE``, and its label F1 minus the
student's with a paired bootstrap interval (``onestep_errors_ngrams.md``: the same student by
argmax, ``--compared model/checkpoints/dcd-b8 --compared-option report_ngrams=false --name
onestep_errors_ngrams``).
AR, the multi-step teacher and the one-step student write reports for the same phantom test
studies (batch 16, one thread by default). A generated sentence is *novel* when no report of
the 4,000 training studies contains it, digits and the full stop aside (sizes and distances
vary by study, so "16 mm" and "25 mm" count as the same sentence). The phantom's reports are
built from a few hundred templates, so a novel sentence is one the model assembled itself:
mostly pieces of two phrasings of one statement (``The mediastinum contours are widened.``, from
"The mediastinum is not widened." and "The mediastinal contours are normal.") or words repeated
across positions.
Every false-positive finding is traced to the labeler's mention that made it positive, to tell
errors written in novel sentences from errors written in well-formed ones.
A sentence has a *doubled word* when one word follows itself ("Left pleural effusion
effusion."): no training report has one, and non-autoregressive decoders write them when their
positions agree on the words but not on where each one lands.
Writes ``benchmarks/results/<name>.{md,json}`` (``onestep_errors`` by default).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clinical_eval import OBSERVATIONS, LabeledReport, label_with_evidence  # noqa: E402
from model import CHECKPOINTS  # noqa: E402
from model.bench import decode_all, paired_f1_difference, parse_rows  # noqa: E402
from model.checkpoint import load_checkpoint, read_manifest  # noqa: E402
from model.data.datasets import StudyDataset, phantom_cache  # noqa: E402
from model.distill import DCDConfig  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
_SENTENCE = re.compile(r"[^.\n]+\.?")
_HEADER = re.compile(r"^\s*(FINDINGS|IMPRESSION)\s*:+\s*", re.IGNORECASE)


def sentence_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, normalised sentence) for every sentence of ``text``; headers and digits out."""
    spans = []
    for match in _SENTENCE.finditer(text):
        words = re.sub(r"\d+(\.\d+)?", "#", _HEADER.sub("", match.group())).split()
        normalised = " ".join(words).rstrip(".")
        if normalised:
            spans.append((match.start(), match.end(), normalised))
    return spans


def has_doubled_word(sentence: str) -> bool:
    words = [word.lower().strip(",;:") for word in sentence.split()]
    return any(a == b and a != "#" for a, b in pairwise(words))


def known_sentences(reports: list[str]) -> set[str]:
    return {sentence for text in reports for _, _, sentence in sentence_spans(text)}


def engine_errors(
    reports: list[LabeledReport], truth: list[dict[str, int | None]], known: set[str]
) -> dict[str, Any]:
    """Novel-sentence rates, and false positives / negatives per finding with their source."""
    sentences = novel = doubled = reports_with_novel = 0
    novel_counts: Counter[str] = Counter()
    per_finding = {name: {"fp": 0, "fn": 0, "fp_in_novel": 0} for name in OBSERVATIONS}
    for report, gold in zip(reports, truth, strict=True):
        spans = sentence_spans(report.scored_text)
        novel_spans = [(a, b, s) for a, b, s in spans if s not in known]
        novel_counts.update(s for _, _, s in novel_spans)
        sentences, novel = sentences + len(spans), novel + len(novel_spans)
        doubled += sum(has_doubled_word(sentence) for _, _, sentence in spans)
        reports_with_novel += bool(novel_spans)
        for name in OBSERVATIONS:
            said, true = report.labels[name] == 1, gold[name] == 1
            if said and not true:
                per_finding[name]["fp"] += 1
                per_finding[name]["fp_in_novel"] += any(
                    a <= m.start < b
                    for m in report.mentions
                    if m.observation == name and m.value == 1
                    for a, b, _ in novel_spans
                )
            per_finding[name]["fn"] += true and not said
    return {
        "novel_sentence_share": novel / max(sentences, 1),
        "reports_with_novel_sentence": reports_with_novel / max(len(reports), 1),
        "doubled_word_share": doubled / max(sentences, 1),
        "per_finding": per_finding,
        "top_novel": novel_counts.most_common(12),
    }


def render(results: dict[str, Any], args: argparse.Namespace, student_id: str) -> str:
    rows = list(results)
    lines = [
        "# One-step student: where its macro-F1 goes",
        "",
        f"{args.n} phantom test studies, batch 16, "
        f"{args.threads} thread(s); student `{student_id}`"
        + (f", compared with `{args.compared}`" if args.compared else "")
        + (f" decoded with {', '.join(args.compared_option)}" if args.compared_option else "")
        + ". From "
        "`benchmarks/onestep_errors.py` (the docstring defines *novel sentence*).",
        *(
            f"`{row}` minus the student: "
            + ", ".join(
                f"{metric} {t['delta']:+.3f} [{t['low']:+.3f}, {t['high']:+.3f}]"
                for metric, t in results[row]["minus_student"].items()
            )
            + " (paired bootstrap 95%)."
            for row in rows
            if "minus_student" in results[row]
        ),
        "",
        "| row | novel sentences | reports with a novel sentence | sentences with a doubled word "
        "| false positives | of them written in a novel sentence | false negatives |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r = results[row]
        fp = sum(f["fp"] for f in r["per_finding"].values())
        in_novel = sum(f["fp_in_novel"] for f in r["per_finding"].values())
        fn = sum(f["fn"] for f in r["per_finding"].values())
        lines.append(
            f"| {row} | {r['novel_sentence_share']:.3f} | {r['reports_with_novel_sentence']:.3f} "
            f"| {r['doubled_word_share']:.3f} | {fp} | {in_novel} ({in_novel / max(fp, 1):.0%}) "
            f"| {fn} |"
        )
    lines += [
        "",
        "False positives (of them in a novel sentence) / false negatives, per finding:",
        "",
    ]
    lines += ["| finding | " + " | ".join(rows) + " |", "|---|" + "---|" * len(rows)]
    for name in OBSERVATIONS:
        cells = [results[row]["per_finding"][name] for row in rows]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{c['fp']} ({c['fp_in_novel']}) / {c['fn']}" for c in cells)
            + " |"
        )
    for row in rows:
        lines += ["", f"Most frequent novel sentences, `{row}`:", ""]
        lines += [f"- {count} x `{sentence}`" for sentence, count in results[row]["top_novel"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--student", type=Path, default=CHECKPOINTS / "dcd-b8")
    parser.add_argument("--teacher", type=Path, default=CHECKPOINTS / "rad-b8")
    parser.add_argument("--ar", type=Path, default=CHECKPOINTS / "ar-tiny")
    parser.add_argument("--compared", type=Path, help="a second one-step student")
    parser.add_argument(
        "--compared-option", action="append", default=[], help="KEY=VALUE for its engine"
    )
    parser.add_argument("--name", default="onestep_errors", help="stem of the result files")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "runs" / "cache")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    manifest = read_manifest(args.student)
    model = manifest["model"]
    compared = {"diffusion-onestep@compared": args.compared} if args.compared else {}
    rows = parse_rows(
        ",".join(["ar", "diffusion-multistep@teacher", "diffusion-onestep@student", *compared]),
        [
            f"ar={args.ar}",
            f"diffusion-multistep@teacher={args.teacher}",
            f"diffusion-onestep@student={args.student}",
            *(f"{row}={path}" for row, path in compared.items()),
        ],
        int(model["block_size"]),
        [f"{row}:{option}" for row in compared for option in args.compared_option],
    )
    size, seed = int(model["image_size"]), DCDConfig.phantom_seed
    test = StudyDataset(phantom_cache(args.cache_dir, seed, args.n, "test", size), qa_per_study=0)
    train = StudyDataset(
        phantom_cache(args.cache_dir, seed, DCDConfig.train_studies, "train", size),
        qa_per_study=0,
    )
    known = known_sentences([record.report_text for record in train.records])
    truth = [record.labels for record in test.records]
    results = {
        "reference": engine_errors(
            label_with_evidence([r.report_text for r in test.records]), truth, known
        )
    }
    labels = {}
    for row in rows:
        texts = decode_all(load_checkpoint(row.checkpoint), row, test, 16)["texts"]
        labeled = label_with_evidence(texts)
        labels[row.name] = [report.labels for report in labeled]
        results[row.name] = engine_errors(labeled, truth, known)
    for name in compared:
        results[name]["minus_student"] = paired_f1_difference(
            labels["diffusion-onestep@student"], labels[name], truth
        )
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(render(results, args, manifest["model_id"]))


if __name__ == "__main__":
    main()
