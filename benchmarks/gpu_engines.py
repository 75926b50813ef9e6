"""AR against one-step decoding on a GPU: latency at batch 1, reports per second against batch.

The issue's benchmark asks for GPU numbers when a machine with one is lent; such a machine has
PyTorch but not this project's data, so the run has three steps:

    .venv/bin/python benchmarks/gpu_engines.py prepare --n 256          # here, on the CPU
    python3 benchmarks/gpu_engines.py run --out OUT/gpu_engines.json    # on the GPU machine
    python3 benchmarks/gpu_engines.py profile --out OUT                 # there too, optional
    .venv/bin/python benchmarks/gpu_engines.py table OUT/gpu_engines.json

``prepare`` renders the phantom test studies into ``runs/gpu-inputs`` (the render cache the
bench reads, ~10 KB a study, so the GPU decodes exactly the CPU's inputs) and decodes them here
at batch 16 with every row. ``run`` loads the shipped checkpoints on the GPU and times
(``model.bench.decode_batch``: the engine's clock, started with the GPU idle) every row at batch
1 (``--latency-n`` studies) and the throughput at each ``--batch-sizes`` over all studies; it
keeps the batch-16 texts. ``table`` compares those texts with the CPU's, scores both with the
labeller, and writes ``benchmarks/results/gpu_engines.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from pathlib import Path
from typing import Any

import torch
from engines import (  # the sibling script: this one runs from benchmarks/
    bare_forward_seconds,
    engine_forward_seconds,
    throughput_plot,
)

from model import AR_CHECKPOINT, CHECKPOINTS
from model.bench import LABEL_F1, decode_batch, f1_key
from model.checkpoint import LoadedCheckpoint, load_checkpoint
from model.cli import DEFAULT_CACHE
from model.data.datasets import StudyDataset
from model.data.qa import REPORT_PROMPT
from model.decoding import get_engine
from model.generation import Engine

RESULTS = Path(__file__).parent / "results"
INPUTS = Path(__file__).parent.parent / "runs" / "gpu-inputs"
ROWS = {  # row -> (engine, checkpoint): the shipped ones
    "ar": ("ar", AR_CHECKPOINT),
    "onestep-b4": ("diffusion-onestep", CHECKPOINTS / "dcd-b4"),
    "onestep-b8": ("diffusion-onestep", CHECKPOINTS / "dcd-b8"),
}
NOTES = "## What it says"
TEXTS_BATCH = 16  # the batch size whose texts are compared between CPU and GPU


def decode(
    loaded: LoadedCheckpoint, engine: Engine, pixels: torch.Tensor, batch_size: int
) -> tuple[list[str], float, int]:
    """Texts, seconds in the engine and forwards times reports, over every batch."""
    batches = [
        decode_batch(loaded, engine, pixels[first : first + batch_size])
        for first in range(0, len(pixels), batch_size)
    ]
    texts = [text for batch in batches for text in batch.texts]
    seconds = sum(batch.seconds for batch in batches)
    return texts, seconds, sum(batch.forwards * len(batch.texts) for batch in batches)


def study_pixels(inputs: Path) -> torch.Tensor:
    """(N, 1, S, S) model inputs of the render cache that ``prepare`` copied."""
    dataset = StudyDataset(inputs / "studies", qa_per_study=0)
    return torch.stack([dataset[i]["pixels"] for i in range(len(dataset))])  # type: ignore[misc]


def prepare(n: int, cache_dir: Path, out: Path) -> None:
    from model.data.datasets import phantom_cache

    cache = phantom_cache(cache_dir, 0, n, "test", 128)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(cache, out / "studies")
    pixels = study_pixels(out)
    texts = {}
    for row, (engine, checkpoint) in ROWS.items():
        loaded = load_checkpoint(checkpoint)
        texts[row] = decode(loaded, get_engine(engine), pixels, TEXTS_BATCH)[0]
    (out / "cpu_texts.json").write_text(json.dumps(texts))


def run_row(
    loaded: LoadedCheckpoint,
    engine: Engine,
    pixels: torch.Tensor,
    latency_n: int,
    batches: list[int],
) -> dict[str, Any]:
    decode(loaded, engine, pixels[:TEXTS_BATCH], TEXTS_BATCH)  # warm-up: kernels, allocator
    decode(loaded, engine, pixels[:2], 1)
    _, seconds, forwards = decode(loaded, engine, pixels[:latency_n], 1)
    result: dict[str, Any] = {
        "ms_per_report_batch1": 1000 * seconds / latency_n,
        "forwards_per_report": forwards / latency_n,
        "ms_per_forward_batch1": 1000 * seconds / forwards,
        "reports_per_s": {"1": latency_n / seconds},
    }
    for batch_size in batches:
        texts, seconds, _ = decode(loaded, engine, pixels, batch_size)
        result["reports_per_s"][str(batch_size)] = len(pixels) / seconds
        if batch_size == TEXTS_BATCH:
            result["texts"] = texts
    return result


def run(inputs: Path, out: Path, latency_n: int, batches: list[int]) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pixels = study_pixels(inputs)
    rows = {}
    for row, (engine, checkpoint) in ROWS.items():
        loaded = load_checkpoint(checkpoint, device)
        rows[row] = run_row(loaded, get_engine(engine), pixels, latency_n, batches)
        print(row, {k: v for k, v in rows[row].items() if k != "texts"}, flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "torch": torch.__version__,
                "python": platform.python_version(),
                "n": len(pixels),
                "latency_n": latency_n,
                "rows": rows,
            }
        )
    )


def profile(inputs: Path, out: Path, studies: int) -> None:
    """Where a batch-1 forward's time goes on the GPU: wall time against the kernels' own time
    and the number of kernels launched, for AR and the B = 8 one-step engine."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pixels = study_pixels(inputs)[:studies]
    found, tables = {}, []
    for row in ("ar", "onestep-b8"):
        engine_name, checkpoint = ROWS[row]
        loaded, engine = load_checkpoint(checkpoint, device), get_engine(engine_name)
        decode(loaded, engine, pixels, 1)  # warm-up
        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            _, seconds, forwards = decode(loaded, engine, pixels, 1)
        events = prof.key_averages()
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel"))
        found[row] = {
            "wall_ms_per_forward": 1000 * seconds / forwards,
            "kernel_ms_per_forward": sum(e.self_device_time_total for e in kernels)
            / 1000
            / forwards,
            "kernels_per_forward": sum(e.count for e in kernels) / forwards,
            "launches_per_forward": launches / forwards,
            "syncs_per_forward": sum(
                e.count
                for e in events
                if e.key in ("cudaStreamSynchronize", "cudaDeviceSynchronize")
            )
            / forwards,
        }
        print(row, found[row], flush=True)
        tables.append(f"## {row}\n" + events.table(sort_by="self_cpu_time_total", row_limit=25))
    found["forwards"] = forward_costs(load_checkpoint(ROWS["onestep-b8"][1], device), pixels)
    print(found["forwards"], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_profile.json").write_text(json.dumps(found, indent=2))
    (out / "gpu_profile.txt").write_text("\n\n".join(tables))


def forward_costs(loaded: LoadedCheckpoint, pixels: torch.Tensor) -> dict[str, float]:
    """The issue's t(n), a bare forward of n tokens against a cache of the context and half a
    report, and the fused forward through the engine's ``BlockForward`` (its block mask
    included), in ms at batch 1: the ceiling B t(1) / t(2B) and the engine's overhead."""
    vlm, tokenizer = loaded.vlm, loaded.tokenizer
    ids = torch.tensor([tokenizer.chat_prompt(REPORT_PROMPT)], device=vlm.device)
    with torch.inference_mode():
        context, mask = vlm.build_context(pixels[:1].to(vlm.device), ids, torch.ones_like(ids))
    half_report = context.shape[1] + 26  # AR writes ~52 tokens a report here
    costs = {f"t{n}": bare_forward_seconds(vlm, context, n, half_report, 50) for n in (1, 8, 16)}
    for block in (4, 8):
        costs[f"fused_b{block}"] = engine_forward_seconds(vlm, context, mask, block, 52, 10)[1]
    return {name: 1000 * seconds for name, seconds in costs.items()}


def table(measured: Path, inputs: Path) -> None:
    from clinical_eval import label, label_f1
    from model.data.datasets import read_cache

    gpu = json.loads(measured.read_text())
    cpu = json.loads((inputs / "cpu_texts.json").read_text())
    references = [record.labels for record in read_cache(inputs / "studies")[1]]
    macro = f1_key(LABEL_F1["macro_f1_14"])
    ar = gpu["rows"]["ar"]
    batches = list(ar["reports_per_s"])
    lines = [
        f"# AR and one-step decoding on a GPU ({gpu['device']}, torch {gpu['torch']})",
        "",
        "`benchmarks/gpu_engines.py`; shipped checkpoints, fp32, "
        f"{gpu['n']} phantom test studies (batch 1: the first {gpu['latency_n']}).",
        "",
        "| row | forwards/report | ms/report, batch 1 | speedup vs AR | ms/forward | "
        + " | ".join(f"reports/s @{b}" for b in batches)
        + " | texts as on CPU | macro-F1 (14) GPU / CPU |",
        "|---" * (7 + len(batches)) + "|",
    ]
    summary = {}
    for row, result in gpu["rows"].items():
        same = sum(g == c for g, c in zip(result["texts"], cpu[row], strict=True)) / len(cpu[row])
        f1_gpu = label_f1(label(result["texts"]), references)[macro]
        f1_cpu = label_f1(label(cpu[row]), references)[macro]
        speedup = ar["ms_per_report_batch1"] / result["ms_per_report_batch1"]
        lines.append(
            f"| {row} | {result['forwards_per_report']:.1f} | {result['ms_per_report_batch1']:.1f} "
            f"| {speedup:.2f}x | {result['ms_per_forward_batch1']:.2f} | "
            + " | ".join(f"{result['reports_per_s'][b]:.0f}" for b in batches)
            + f" | {same:.1%} | {f1_gpu:.3f} / {f1_cpu:.3f} |"
        )
        summary[row] = {k: v for k, v in result.items() if k != "texts"} | {
            "speedup_vs_ar_batch1": speedup,
            "same_text_as_cpu": same,
            "macro_f1_14_gpu": f1_gpu,
            "macro_f1_14_cpu": f1_cpu,
        }
    lines += ["", "![reports per second against batch size](gpu_engines.png)", ""]
    markdown = RESULTS / "gpu_engines.md"
    notes = markdown.read_text() if markdown.exists() else ""
    kept = notes[notes.index(NOTES) :] if NOTES in notes else ""  # written by hand
    markdown.write_text("\n".join(lines) + "\n" + kept)
    (RESULTS / "gpu_engines.json").write_text(
        json.dumps({k: v for k, v in gpu.items() if k != "rows"} | {"rows": summary}, indent=2)
    )
    throughput_plot(
        {row: [(int(b), r["reports_per_s"][b]) for b in batches] for row, r in summary.items()},
        f"Throughput, {gpu['device']}",
        RESULTS / "gpu_engines.png",
        log_y=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    step = parser.add_subparsers(dest="step", required=True)
    p = step.add_parser("prepare")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    r = step.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--latency-n", type=int, default=64)
    r.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 16, 64, 256])
    f = step.add_parser("profile")
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--studies", type=int, default=4)
    t = step.add_parser("table")
    t.add_argument("measured", type=Path)
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.n, args.cache_dir, INPUTS)
    elif args.step == "run":
        run(INPUTS, args.out, args.latency_n, args.batch_sizes)
    elif args.step == "profile":
        profile(INPUTS, args.out, args.studies)
    else:
        table(args.measured, INPUTS)


if __name__ == "__main__":
    main()
