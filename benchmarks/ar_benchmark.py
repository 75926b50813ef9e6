"""Stage-1 (AR) model on the phantom test split: clinical F1, BLEU-4, ROUGE-L, Q&A, speed.

Run: ``.venv/bin/python benchmarks/ar_benchmark.py [--checkpoint DIR] [--studies 500]``.
Writes ``benchmarks/results/ar_benchmark.{md,json}`` and merges the headline numbers into the
checkpoint's ``metrics.json``.

- Label F1: the project's CheXpert-rule labeler (``clinical_eval.label``) on the generated
  reports, scored (a) against the phantom generator's ground-truth labels and (b) against the
  labeler's reading of the reference reports; ``unc0``/``unc1`` count "uncertain" as negative /
  positive. Baseline: every study gets the most common training report.
- BLEU-4: sacrebleu corpus BLEU; ROUGE-L: mean F-measure of ``rouge_score``.
- Q&A: exact match of the assistant's answer per question type (presence: two random
  observations per study; laterality and device: every such question the study has).
- Speed: greedy decoding, latency per report at batch 1 (median of ``--latency-runs``),
  throughput at batch 16, generated tokens per second, peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transformers import DynamicCache  # noqa: E402

import model  # noqa: E402
from model.autoregressive import AREngine  # noqa: E402
from model.checkpoint import write_metrics  # noqa: E402
from model.data.datasets import StudyRecord, phantom_cache, read_cache  # noqa: E402
from model.data.qa import REPORT_PROMPT, QAPair  # noqa: E402
from model.report import ReportGenerator  # noqa: E402
from model.vlm import VLM  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def load_split(
    cache_root: Path, split: str, n: int, size: int
) -> tuple[torch.Tensor, list[StudyRecord]]:
    images, records = read_cache(phantom_cache(cache_root, 0, n, split, size))
    pixels = torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0)[:, None]
    return pixels, records


def label_scores(texts: list[str], records: list[StudyRecord], prefix: str) -> dict[str, float]:
    from clinical_eval import label, label_f1

    predicted = label(texts)
    truth = label_f1(predicted, [r.labels for r in records], prefix=f"{prefix}_vs_truth")
    reference = label_f1(
        predicted, label([r.report_text for r in records]), prefix=f"{prefix}_vs_refreport"
    )
    return {**truth, **reference}


def per_observation_f1(texts: list[str], records: list[StudyRecord]) -> dict[str, float]:
    """F1 per observation against ground truth (positive = 1), to show what limits the macro."""
    from clinical_eval import OBSERVATIONS, label

    predicted = label(texts)
    scores = {}
    for name in OBSERVATIONS:
        pred = np.array([p.get(name) == 1 for p in predicted])
        true = np.array([r.labels.get(name) == 1 for r in records])
        tp, fp, fn = (pred & true).sum(), (pred & ~true).sum(), (~pred & true).sum()
        scores[name] = float(2 * tp / max(1, 2 * tp + fp + fn))
    return scores


@torch.inference_mode()
def finding_head_scores(
    vlm: VLM, pixels: torch.Tensor, records: list[StudyRecord]
) -> dict[str, float]:
    """AUC and F1 (p > 0.5) of the finding tokens' head per observation: the image-reading
    ceiling that the written reports inherit."""
    from sklearn.metrics import f1_score, roc_auc_score

    from clinical_eval.observations import OBSERVATIONS

    if vlm.findings is None:
        return {}
    chunks = [
        vlm.embed_images_with_findings(pixels[i : i + 64])[1] for i in range(0, len(pixels), 64)
    ]
    logits = torch.cat([chunk for chunk in chunks if chunk is not None])  # none is: findings exist
    probs = torch.sigmoid(logits).numpy()
    truth = np.array([[r.labels.get(name) == 1 for name in OBSERVATIONS] for r in records])
    scores = {}
    for j, name in enumerate(OBSERVATIONS):
        if 0 < truth[:, j].sum() < len(truth):
            scores[f"{name} AUC"] = float(roc_auc_score(truth[:, j], probs[:, j]))
        scores[f"{name} F1"] = float(f1_score(truth[:, j], probs[:, j] > 0.5, zero_division=0))
    return scores


def language_scores(texts: list[str], references: list[str]) -> dict[str, float]:
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = [
        scorer.score(ref, hyp)["rougeL"].fmeasure
        for hyp, ref in zip(texts, references, strict=True)
    ]
    return {
        "bleu4": sacrebleu.corpus_bleu(texts, [references]).score / 100,
        "rougeL": float(np.mean(rouge)),
    }


def qa_accuracy(
    generator: ReportGenerator, pixels: torch.Tensor, records: list[StudyRecord]
) -> dict[str, float]:
    rng = np.random.default_rng(0)
    asked: list[tuple[int, QAPair]] = []
    for i, record in enumerate(records):
        presence = [q for q in record.qa if q.kind == "presence"]
        picks = rng.choice(len(presence), size=min(2, len(presence)), replace=False)
        asked += [(i, presence[j]) for j in picks] + [
            (i, q) for q in record.qa if q.kind != "presence"
        ]
    correct: dict[str, list[bool]] = collections.defaultdict(list)
    for start in range(0, len(asked), 32):
        chunk = asked[start : start + 32]
        prompts = [generator.tokenizer.chat_prompt(q.question) for _, q in chunk]
        answers, _, _ = generator.decode(pixels[[i for i, _ in chunk]], prompts, 16)
        for (_, q), answer in zip(chunk, answers, strict=True):
            correct[q.kind].append(answer == q.answer)
    return {f"qa_{kind}_accuracy": float(np.mean(v)) for kind, v in correct.items()} | {
        f"qa_{kind}_n": float(len(v)) for kind, v in correct.items()
    }


def speed(generator: ReportGenerator, pixels: torch.Tensor, latency_runs: int) -> dict[str, float]:
    generator.generate(pixels[:2], label=False)  # warm-up
    latencies = []
    for i in range(latency_runs):
        start = time.perf_counter()
        generator.generate(pixels[i : i + 1], label=False)
        latencies.append(time.perf_counter() - start)
    generator.batch_size = 16
    batch = pixels[:64]
    start = time.perf_counter()
    reports = generator.generate(batch, label=False)
    seconds = time.perf_counter() - start
    tokens = sum(len(generator.tokenizer.encode(r.text)) for r in reports)
    return {
        "latency_batch1_s_median": statistics.median(latencies),
        "throughput_batch16_reports_per_s": len(reports) / seconds,
        "tokens_per_s_batch16": tokens / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


@torch.inference_mode()
def decode_without_cache(vlm: VLM, embeds: torch.Tensor, mask: torch.Tensor, steps: int) -> None:
    """Reference: re-run the whole sequence every step (what the KV cache saves)."""
    tokens = torch.empty(1, 0, dtype=torch.long)
    for _ in range(steps):
        inputs = torch.cat([embeds, vlm.embed_tokens(tokens)], 1)
        full = torch.cat([mask, torch.ones_like(tokens)], 1)
        logits = vlm.lm(inputs_embeds=inputs, attention_mask=full).logits[:, -1]
        tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], 1)


@torch.no_grad()
def decode_cache_plain(vlm: VLM, embeds: torch.Tensor, mask: torch.Tensor, steps: int) -> None:
    """Reference: KV cache, but no_grad, full-sequence logits and a new mask every step."""
    cache = DynamicCache()
    out = vlm.lm(inputs_embeds=embeds, attention_mask=mask, cache=cache)
    for _ in range(steps - 1):
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        mask = torch.cat([mask, torch.ones_like(token)], 1)
        out = vlm.lm(input_ids=token, attention_mask=mask, cache=cache)


def engine_variants(
    generator: ReportGenerator, pixels: torch.Tensor, steps: int = 96
) -> dict[str, float]:
    """Tokens/s at batch 1 of each decoding refinement, on the same forward and length."""
    vlm, tokenizer = generator.vlm, generator.tokenizer
    prompt = torch.tensor([tokenizer.chat_prompt(REPORT_PROMPT)])
    with torch.inference_mode():
        embeds, mask = vlm.build_context(pixels[:1], prompt, torch.ones_like(prompt))
    eos, vlm.lm.config.eos_token_id = vlm.lm.config.eos_token_id, -1  # fixed length for all
    engine = AREngine()
    variants = {
        "no_kv_cache": lambda: decode_without_cache(vlm, embeds, mask, steps),
        "kv_cache_plain": lambda: decode_cache_plain(vlm, embeds, mask, steps),
        "kv_cache_lean (ar engine)": lambda: engine.generate(
            vlm, embeds, mask, max_new_tokens=steps
        ),
    }
    rates = {}
    for name, run in variants.items():
        run()  # warm-up
        start = time.perf_counter()
        for _ in range(3):
            run()
        rates[f"engine_tokens_per_s_batch1[{name}]"] = 3 * steps / (time.perf_counter() - start)
    vlm.lm.config.eos_token_id = eos
    return rates


def write_results(results: dict[str, Any], name: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    lines = [
        f"# {name}",
        "",
        f"checkpoint `{results['checkpoint']}`, {results['studies']} phantom test "
        f"studies, {results['device']}, {results['date']}",
        "",
        "| metric | model | most-common-report baseline |",
        "|---|---|---|",
    ]
    for key, value in results["model"].items():
        base = results["baseline"].get(key)
        lines.append(f"| {key} | {value:.4f} | {'' if base is None else f'{base:.4f}'} |")
    lines += ["", "| observation | F1 vs ground truth |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in results["per_observation_f1"].items()]
    if results["finding_head"]:
        lines += ["", "Finding tokens' head on the same images (what the reports can know):", ""]
        lines += ["| observation, measure | value |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in results["finding_head"].items()]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=model.AR_CHECKPOINT)
    parser.add_argument("--studies", type=int, default=500)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "runs" / "cache")
    parser.add_argument("--latency-runs", type=int, default=10)
    parser.add_argument(
        "--train-studies", type=int, default=6000, help="for the most-common-report baseline"
    )
    parser.add_argument("--name", default="ar_benchmark")
    args = parser.parse_args()

    generator = model.load(args.checkpoint, batch_size=16)
    size = generator.image_size
    pixels, records = load_split(args.cache_dir, "test", args.studies, size)
    _, train_records = load_split(args.cache_dir, "train", args.train_studies, size)
    texts = [r.text for r in generator.generate(pixels, label=False)]
    references = [r.report_text for r in records]
    common = collections.Counter(r.report_text for r in train_records).most_common(1)[0][0]
    baseline_texts = [common] * len(records)

    results: dict[str, Any] = {
        "checkpoint": str(args.checkpoint),
        "studies": len(records),
        "device": f"{platform.machine()} CPU, torch threads {torch.get_num_threads()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "model": label_scores(texts, records, "labeler")
        | language_scores(texts, references)
        | qa_accuracy(generator, pixels, records)
        | speed(generator, pixels, args.latency_runs)
        | engine_variants(generator, pixels),
        "baseline": label_scores(baseline_texts, records, "labeler")
        | language_scores(baseline_texts, references),
        "per_observation_f1": per_observation_f1(texts, records),
        "finding_head": finding_head_scores(generator.vlm, pixels, records),
        "examples": [
            {"generated": t, "reference": r} for t, r in zip(texts[:3], references[:3], strict=True)
        ],
    }
    write_results(results, args.name)
    write_metrics(
        args.checkpoint,
        {"phantom_test": results["model"], "phantom_test_baseline": results["baseline"]},
    )
    print(json.dumps(results["model"], indent=2))


if __name__ == "__main__":
    main()
