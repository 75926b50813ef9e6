"""``echocxr bench``: every decoding engine on the same phantom studies, speed and quality.

It decodes the same phantom studies with every engine in one process (same threads, same
machine, same run) and writes, per engine, speed (ms and forwards per report, speedup over
``ar``) and quality (label F1 against the phantom ground truth, BLEU-4, ROUGE-L, repeat rate).

A row is ``ENGINE[@LABEL]``: ``diffusion-onestep@rad`` is the one-step engine on the stage-2
checkpoint (no distillation), ``diffusion-onestep@factorized`` on the factorized baseline. Each
row reads the checkpoint given by ``--checkpoint ROW=DIR``; by default ``ar`` reads the shipped
AR checkpoint and the others ``model/checkpoints/dcd-b{B}``.

Heavy imports (torch, the model, the metrics) happen inside the functions so ``echocxr --help``
stays fast.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from model import CHECKPOINTS
from model.cli import DEFAULT_CACHE, fail

if TYPE_CHECKING:
    import torch

    from clinical_eval.labeler import Labels
    from model.checkpoint import LoadedCheckpoint
    from model.data.datasets import StudyDataset
    from model.generation import Engine


class BenchError(ValueError):
    """A row spec or checkpoint option the benchmark cannot use."""


@dataclass(frozen=True)
class BenchRow:
    """One table row: an engine on a checkpoint trained with block size ``block_size``."""

    name: str
    engine: str
    checkpoint: Path
    block_size: int | None
    options: dict[str, Any] = field(default_factory=dict)  # engine options, e.g. a threshold


def parse_rows(
    engines: str,
    checkpoints: Sequence[str],
    block_size: int,
    engine_options: Sequence[str] = (),
) -> list[BenchRow]:
    """``ar,diffusion-onestep@rad`` + ``ROW=DIR`` checkpoint overrides + ``ROW:KEY=VALUE``
    engine options -> rows (``ar`` first if present)."""
    overrides = {}
    for item in checkpoints:
        name, sep, directory = item.partition("=")
        if not sep or not directory:
            raise BenchError(f"--checkpoint takes ROW=DIR, got {item!r}")
        overrides[name] = Path(directory)
    options = parse_engine_options(engine_options)
    rows = []
    for name in [n.strip() for n in engines.split(",") if n.strip()]:
        engine = name.split("@")[0]
        default = CHECKPOINTS / ("ar-tiny" if engine == "ar" else f"dcd-b{block_size}")
        rows.append(
            BenchRow(
                name,
                engine,
                overrides.get(name, default),
                None if engine == "ar" else block_size,
                options.get(name, {}),
            )
        )
    for flag, named in (("--checkpoint", overrides), ("--engine-option", options)):
        unknown = set(named) - {row.name for row in rows}
        if unknown:
            raise BenchError(f"{flag} names rows that are not benchmarked: {sorted(unknown)}")
    if not rows:
        raise BenchError("--engines lists no engine")
    return sorted(rows, key=lambda row: row.engine != "ar")


def parse_engine_options(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``ROW:KEY=VALUE`` items -> {row: {key: value}}, each value read as
    :func:`model.decoding.parse_engine_options` reads it."""
    from model.decoding import EngineError
    from model.decoding import parse_engine_options as parse_options

    options: dict[str, dict[str, Any]] = {}
    for item in items:
        row, colon, setting = item.partition(":")  # a row name has no colon; a value may
        try:
            parsed = parse_options([setting])
        except EngineError:
            parsed = {}
        if not colon or not row or not parsed:
            raise BenchError(f"--engine-option takes ROW:KEY=VALUE, got {item!r}")
        options.setdefault(row, {}).update(parsed)
    return options


@dataclass
class DecodedBatch:
    texts: list[str]
    seconds: float  # in the engine, with the GPU (if any) idle when it started
    forwards: int  # the engine's forwards; every report of the batch waited for each
    tokens: int


def decode_batch(loaded: LoadedCheckpoint, engine: Engine, pixels: torch.Tensor) -> DecodedBatch:
    """One batch of images (B, 1, S, S) drafted with ``engine``; only the decoding is timed."""
    import torch

    from model.data.qa import REPORT_PROMPT
    from model.tokenizer import pad_rows

    vlm, tokenizer = loaded.vlm, loaded.tokenizer
    ids, mask = pad_rows(
        [tokenizer.chat_prompt(REPORT_PROMPT)] * len(pixels), tokenizer.pad_id, left=True
    )
    with torch.inference_mode():
        context, context_mask = vlm.build_context(
            pixels.to(vlm.device), ids.to(vlm.device), mask.to(vlm.device)
        )
    if vlm.device.type == "cuda":  # the engine's clock must not count the image encoder's kernels
        torch.cuda.synchronize(vlm.device)
    out = engine.generate(vlm, context, context_mask, max_new_tokens=vlm.config.max_response_tokens)
    return DecodedBatch(
        texts=[tokenizer.decode(row_ids) for row_ids in out.token_ids],
        seconds=out.seconds,
        forwards=out.forwards,
        tokens=sum(len(row_ids) for row_ids in out.token_ids),
    )


def decode_all(
    loaded: LoadedCheckpoint, row: BenchRow, dataset: StudyDataset, batch_size: int
) -> dict[str, Any]:
    """Generate every study's report with one engine; time only the decoding."""
    import torch

    from model.decoding import get_engine

    engine = get_engine(row.engine, **row.options)
    texts, seconds, forwards, tokens = [], 0.0, 0, 0
    for first in range(0, len(dataset), batch_size):
        indices = range(first, min(len(dataset), first + batch_size))
        pixels = torch.stack([dataset[i]["pixels"] for i in indices])  # type: ignore[misc]
        batch = decode_batch(loaded, engine, pixels)
        texts += batch.texts
        seconds += batch.seconds
        forwards += batch.forwards * len(indices)
        tokens += batch.tokens
    n = len(dataset)
    return {
        "texts": texts,
        "ms_per_report": 1000 * seconds / n,
        "forwards_per_report": forwards / n,
        "tokens_per_report": tokens / n,
    }


LABEL_F1 = {"macro_f1_14": "macro14", "micro_f1_5": "micro5"}
"""Bench name -> the labeler's aggregate, scored with uncertain mentions as negative."""


def f1_key(aggregate: str) -> str:
    return f"chexpert_rule_f1_{aggregate}_unc0"


def quality(
    texts: list[str], dataset: StudyDataset, labels: list[Labels] | None = None
) -> dict[str, float]:
    """Label F1 against the phantom ground truth, BLEU-4, ROUGE-L and the repeat rate;
    ``labels`` are the texts' labels when the caller has them already."""
    from clinical_eval import label, label_f1, score
    from clinical_eval.audit import repetition_stats

    f1 = label_f1(labels or label(texts), [record.labels for record in dataset.records])
    language = score(texts, [record.report_text for record in dataset.records], ["bleu", "rouge_l"])
    return {name: f1[f1_key(aggregate)] for name, aggregate in LABEL_F1.items()} | {
        "bleu4": language["bleu4"],
        "rouge_l": language["rouge_l"],
        "repeat_rate": repetition_stats(texts)["share_with_repeated_sentence"],
    }


def per_observation_scores(labels: list[Labels], references: list[Labels]) -> dict[str, Any]:
    """Each of the 14 observations' F1 (``per_observation_f1``: which findings a gap in macro-F1
    comes from) and false positives and negatives (``per_observation_errors``, uncertain as
    negative). Macro-F1 weighs every finding alike, so a row can gain F1 while it adds false
    pneumothoraces, the error a reader can least afford; the counts show such trades."""
    from clinical_eval.label_metrics import label_matrix, per_label

    found = per_label(label_matrix(labels), label_matrix(references), uncertain_as=0)
    return {
        "per_observation_f1": {name: scores["f1"] for name, scores in found.items()},
        "per_observation_errors": {
            name: {"fp": scores["fp"], "fn": scores["fn"]} for name, scores in found.items()
        },
    }


def paired_f1_difference(
    base: list[Labels], labels: list[Labels], references: list[Labels]
) -> dict[str, dict[str, float]]:
    """Label F1 of ``labels`` minus ``base``'s on the same studies, with a paired bootstrap 95%
    interval and p-value (1,000 resamples of the studies). At 500 studies one checkpoint's
    macro-F1 moves by 0.027 between two splits, more than the 0.02 gap the bench is there to
    check, so a difference means little without its interval."""
    from clinical_eval import compare_systems

    tests = compare_systems(base, labels, references)
    return {name: tests[f1_key(aggregate)].as_dict() for name, aggregate in LABEL_F1.items()}


def paired_vs_ar(
    ar_labels: list[Labels], labels: list[Labels], references: list[Labels]
) -> dict[str, dict[str, float]]:
    """:func:`paired_f1_difference` against AR, keys ``<metric>_vs_ar``."""
    differences = paired_f1_difference(ar_labels, labels, references)
    return {f"{name}_vs_ar": test for name, test in differences.items()}


def run_bench(
    rows: list[BenchRow], dataset: StudyDataset, batch_size: int, threads: int
) -> list[dict[str, Any]]:
    """Every row on the same studies in this process; speedups relative to the ``ar`` row."""
    import torch

    from clinical_eval import label
    from model.checkpoint import load_checkpoint

    torch.set_num_threads(threads)
    results = []
    ar_labels = None
    references = [record.labels for record in dataset.records]
    for row in rows:
        loaded = load_checkpoint(row.checkpoint)
        if row.block_size is not None and loaded.vlm.config.block_size != row.block_size:
            raise BenchError(
                f"row {row.name!r}: {row.checkpoint} was trained with block size "
                f"{loaded.vlm.config.block_size}, not the --block-size {row.block_size} benchmarked"
            )
        decoded = decode_all(loaded, row, dataset, batch_size)
        labels = label(decoded["texts"])
        result = {
            "row": row.name,
            "engine": row.engine,
            "checkpoint": str(row.checkpoint),
            "model_id": loaded.model_id,
            "block_size": row.block_size,
            "engine_options": row.options,
            "batch_size": batch_size,
            **{k: v for k, v in decoded.items() if k != "texts"},
            **quality(decoded["texts"], dataset, labels),
            **per_observation_scores(labels, references),
        }
        if ar_labels is None and row.engine == "ar":  # rows are sorted with ar first
            ar_labels = labels  # the first AR row is every later row's reference, as for speed
        elif ar_labels is not None:
            result |= paired_vs_ar(ar_labels, labels, references)
        result["tokens_per_forward"] = result["tokens_per_report"] / max(
            result["forwards_per_report"], 1e-9
        )
        results.append(result)
        logging.getLogger(__name__).info("%s: %.1f ms/report", row.name, result["ms_per_report"])
    ar = next((r for r in results if r["engine"] == "ar"), None)
    for result in results:
        result["speedup_vs_ar"] = ar["ms_per_report"] / result["ms_per_report"] if ar else None
    return results


def write_json_atomically(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def bench(
    engines: Annotated[
        str, typer.Option(help="Comma-separated rows, ENGINE[@LABEL], e.g. ar,diffusion-onestep.")
    ],
    json_out: Annotated[
        Path, typer.Option("--json", help="Where to write the per-engine results (JSON).")
    ],
    block_size: Annotated[int, typer.Option(help="Block size B of the diffusion rows.")] = 8,
    n: Annotated[int, typer.Option(help="Phantom studies to decode.")] = 500,
    split: Annotated[str, typer.Option(help="Phantom split: test or val.")] = "test",
    checkpoint: Annotated[
        list[str] | None, typer.Option(help="ROW=DIR, the checkpoint of a row (repeatable).")
    ] = None,
    engine_option: Annotated[
        list[str] | None,
        typer.Option(
            help="ROW:KEY=VALUE, an option of a row's engine, e.g. "
            "diffusion-multistep@s2:steps=2 (repeatable)."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Studies decoded together.")] = 1,
    threads: Annotated[
        int, typer.Option(help="torch CPU threads (the same for every engine).")
    ] = 1,
    phantom_seed: Annotated[int, typer.Option(help="Seed of the phantom generator.")] = 0,
    cache_dir: Annotated[
        Path, typer.Option(help="Where rendered images are cached.")
    ] = DEFAULT_CACHE,
) -> None:
    """Compare decoding engines on the same phantom studies: speed and clinical quality."""
    from model.checkpoint import CheckpointError, read_manifest
    from model.data.datasets import StudyDataset, phantom_cache
    from model.decoding import EngineError, get_engine

    if split not in ("test", "val") or n < 1 or batch_size < 1 or threads < 1:
        raise fail("need --split test|val and positive --n, --batch-size and --threads")
    try:
        rows = parse_rows(engines, checkpoint or [], block_size, engine_option or [])
        for row in rows:  # a bad option fails now, not after the rows before it have run
            get_engine(row.engine, **row.options)
        image_size = int(read_manifest(rows[0].checkpoint)["model"]["image_size"])
        dataset = StudyDataset(
            phantom_cache(cache_dir, phantom_seed, n, split, image_size),
            qa_per_study=0,
        )
        started = time.time()
        results = run_bench(rows, dataset, batch_size, threads)
    except (BenchError, CheckpointError, EngineError) as err:
        raise fail(str(err)) from err
    write_json_atomically(
        json_out,
        {
            "split": split,
            "n": n,
            "threads": threads,
            "started": started,
            "engines": results,
        },
    )
    for r in results:
        typer.echo(
            f"{r['row']:<32} {r['ms_per_report']:8.1f} ms  {r['forwards_per_report']:6.1f} fwd  "
            f"x{r['speedup_vs_ar'] or 0:5.2f}  macroF1 {r['macro_f1_14']:.3f}  "
            f"repeat {r['repeat_rate']:.3f}  "
            f"pneumothorax FP {r['per_observation_errors']['Pneumothorax']['fp']}"
        )
