"""Decoding speed of the AR and block-diffusion engines on the ar-tiny backbone, same process.

Run: ``nice -n 10 .venv/bin/python benchmarks/engines.py [--threads 1] [--tokens 96]``.
Writes ``benchmarks/results/engines.{md,json,png}``.

Speed does not depend on the weights, so the backbone of ``model/configs/ar-tiny.json`` is built
with random weights and every engine writes exactly ``--tokens`` tokens (no ``<eos>``, repetition
guards off; the AR guard's own cost per step is measured apart): the comparison is per token at
equal length. The one-step engine takes each position's argmax (``report_ngrams=False``): random
weights have no training reports, and what the n-gram prior costs depends on how often a trained
model's argmax leaves the reports' n-grams, so it is measured on the shipped student
(``benchmarks/results/report_ngrams.md``). Times are the fastest of several runs in CPU seconds
of the process (one thread; see ``best_seconds``). Measured:

- ``t(n)``: one bare ``LlamaForCausalLM`` forward of n query tokens against a KV cache of the
  context (the cost model of the issue: the fused ceiling is ``B * t(1) / t(2B)``);
- AR and one-step latency per report at B = 4, 8, 16, and the one-step engine's time per block
  against the bare 2B-token forward it runs (the engine overhead);
- what the lean-forward choices buy: ``inference_mode`` vs ``no_grad``, sdpa vs eager attention,
  the cost of building a block mask (cached across the steps of a block);
- throughput (reports/s) against batch size for AR and one-step at B = 8, to find the crossover.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import DynamicCache

from model.autoregressive import AREngine, LoopGuard
from model.blocks import attention_bias, first_block_start
from model.config import TrainConfig
from model.sampling import BlockForward, OneStepEngine
from model.tokenizer import Tokenizer
from model.vlm import VLM

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).parent.parent


def best_seconds(run: Callable[[], Any], repeats: int) -> float:
    """Fastest of ``repeats`` runs after a warm-up, in CPU seconds of this process; once CUDA
    is in use (``gpu_engines.py``), in wall seconds with the GPU synchronised at both ends.

    With one torch thread, process CPU time equals wall time on an idle core; on this 2-core
    machine shared with four other jobs, wall time mostly measures the neighbours (load ~6).
    On a GPU the host waits for the kernels, which its CPU time does not count.
    """
    on_gpu = torch.cuda.is_initialized()
    clock = time.perf_counter if on_gpu else time.process_time
    run()
    times = []
    for _ in range(repeats):
        if on_gpu:
            torch.cuda.synchronize()
        start = clock()
        run()
        if on_gpu:
            torch.cuda.synchronize()
        times.append(clock() - start)
    return min(times)


def build_backbone(attn: str) -> tuple[VLM, torch.Tensor, torch.Tensor]:
    """The ar-tiny VLM (random weights) and a batch-1 report context."""
    config = TrainConfig.from_file(REPO / "model/configs/ar-tiny.json").model
    config.text.llama["attn_implementation"] = attn
    tokenizer = Tokenizer.train(
        ["FINDINGS: The lungs are clear.\nIMPRESSION: Normal."] * 4, vocab_size=1024
    )
    torch.manual_seed(0)
    vlm = VLM(config, tokenizer).eval()
    vlm.lm.config.eos_token_id = -1  # never stop early: every engine writes exactly --tokens
    prompt = torch.tensor([tokenizer.chat_prompt("Review this chest X-ray and write a report.")])
    with torch.inference_mode():
        size = config.image_size
        context, mask = vlm.build_context(
            torch.rand(1, 1, size, size), prompt, torch.ones_like(prompt)
        )
    return vlm, context, mask


def batched(
    context: torch.Tensor, mask: torch.Tensor, batch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    return context.expand(batch, -1, -1).contiguous(), mask.expand(batch, -1).contiguous()


def bare_forward_seconds(
    vlm: VLM, context: torch.Tensor, n_query: int, cache_len: int, repeats: int
) -> float:
    """One forward of ``n_query`` tokens against a cache of ``cache_len`` (no mask building)."""
    lm = vlm.lm
    embeds = context[:, :1].expand(context.shape[0], n_query, -1).contiguous()
    with torch.inference_mode():
        cache = DynamicCache()
        lm(
            inputs_embeds=context[:, :1].expand(-1, cache_len, -1).contiguous(),
            cache=cache,
            use_cache=True,
        )
        positions = torch.arange(cache_len, cache_len + n_query, device=context.device)[None]

        def step() -> None:
            lm(
                inputs_embeds=embeds,
                position_ids=positions,
                cache=cache,
                use_cache=True,
                logits_to_keep=n_query,
            )
            cache.crop(-n_query)

        return best_seconds(step, repeats)


def engine_seconds(
    engine: Any,
    vlm: VLM,
    context: torch.Tensor,
    mask: torch.Tensor,
    tokens: int,
    repeats: int,
    mode: Callable[[], contextlib.AbstractContextManager[Any]] = torch.inference_mode,
) -> float:
    def run() -> None:
        with mode():
            engine.generate.__wrapped__(engine, vlm, context, mask, max_new_tokens=tokens)

    return best_seconds(run, repeats)


def engine_forward_seconds(
    vlm: VLM, context: torch.Tensor, mask: torch.Tensor, block: int, tokens: int, repeats: int
) -> tuple[float, float]:
    """(prefill, one fused forward) through the engine's ``BlockForward``, its mask included.

    The fused forward is timed with the cache where the bare forward has it (context + half a
    report), so the two differ only by what the engine adds: the block mask and the cache crop.
    """
    s0 = first_block_start(context.shape[1], block)
    noisy = context[:, :1].expand(-1, block, -1)
    with torch.inference_mode():

        def prefill() -> BlockForward:
            forward = BlockForward(vlm.lm, mask, block, s0 + tokens + 2 * block)
            forward(context[:, :s0], noisy)
            return forward

        prefill_seconds = best_seconds(prefill, repeats)
        forward = prefill()
        while forward.cached < context.shape[1] + tokens // 2 - block:
            forward(noisy, noisy)
        cached = forward.cached

        def step() -> None:
            forward(noisy, noisy)
            forward.cache.crop(-block)  # drop the clean block it kept: the cache is as before
            forward.cached = cached

        return prefill_seconds, best_seconds(step, repeats * 5)


def latency_rows(
    vlm: VLM, context: torch.Tensor, mask: torch.Tensor, tokens: int, repeats: int
) -> list[dict[str, Any]]:
    """Batch-1 latency per report and where the one-step engine's time per block goes."""
    Lc = context.shape[1]
    t1 = bare_forward_seconds(vlm, context, 1, Lc + tokens // 2, repeats * 5)
    ar = engine_seconds(AREngine(repetition_guard=False), vlm, context, mask, tokens, repeats)
    rows = [
        {"engine": "ar", "B": 1, "ms_per_report": 1000 * ar, "forwards": tokens, "t1_ms": 1000 * t1}
    ]
    for block in (4, 8, 16):
        t2b = bare_forward_seconds(vlm, context, 2 * block, Lc + tokens // 2, repeats * 5)
        prefill, fused = engine_forward_seconds(vlm, context, mask, block, tokens, repeats)
        one = engine_seconds(
            OneStepEngine(block_size=block, repetition_guard=False, report_ngrams=False),
            vlm,
            context,
            mask,
            tokens,
            repeats,
        )
        n_blocks = -(-(Lc % block + tokens) // block)
        per_block = (one - prefill) / (n_blocks - 1)  # the steady state, prefill set apart
        rows.append(
            {
                "engine": "diffusion-onestep",
                "B": block,
                "ms_per_report": 1000 * one,
                "forwards": n_blocks,
                "t2B_ms": 1000 * t2b,
                "fused_forward_ms": 1000 * fused,
                "prefill_ms": 1000 * prefill,
                "ms_per_block": 1000 * per_block,
                "overhead_vs_bare": per_block / t2b,
                "overhead_vs_fused": per_block / fused,
                "speedup_vs_ar": ar / one,
                "ceiling": block * t1 / t2b,
                "share_of_ceiling": (ar / one) / (block * t1 / t2b),
            }
        )
    return rows


def lean_forward_rows(tokens: int, repeats: int) -> list[dict[str, Any]]:
    """What each lean-forward choice buys, per engine: autograd mode and attention kernel."""
    rows = []
    for attn in ("sdpa", "eager"):
        vlm, context, mask = build_backbone(attn)
        for label, mode in (("inference_mode", torch.inference_mode), ("no_grad", torch.no_grad)):
            for name, engine in (
                ("ar", AREngine(repetition_guard=False)),
                (
                    "diffusion-onestep B=8",
                    OneStepEngine(8, repetition_guard=False, report_ngrams=False),
                ),
            ):
                seconds = engine_seconds(engine, vlm, context, mask, tokens, repeats, mode)
                rows.append(
                    {
                        "attention": attn,
                        "mode": label,
                        "engine": name,
                        "ms_per_report": 1000 * seconds,
                    }
                )
    return rows


def mask_cost_us(
    vlm: VLM, context: torch.Tensor, mask: torch.Tensor, block: int, tokens: int, repeats: int
) -> dict[str, float]:
    """Microseconds of the block mask: rebuilt for every block vs one bias per generation.

    ``rebuild`` is what a per-block ``attention_bias`` call costs (what the engine did before);
    ``setup`` builds ``BlockForward``'s whole-generation bias once; ``view`` is what each block
    then pays to slice it.
    """
    s0 = first_block_start(context.shape[1], block)
    end = context.shape[1] + tokens // 2 + block
    k_pos = torch.arange(end)
    k_noisy = k_pos >= end - block
    valid = torch.ones(1, end, dtype=torch.bool)
    q = slice(end - 2 * block, end)
    with torch.inference_mode():
        forward = BlockForward(vlm.lm, mask, block, s0 + tokens + 2 * block)
        forward.cached = end - 2 * block
        timings = {
            "rebuild": best_seconds(
                lambda: attention_bias(k_pos[q], k_noisy[q], k_pos, k_noisy, valid, block),
                repeats,
            ),
            "setup": best_seconds(
                lambda: BlockForward(vlm.lm, mask, block, s0 + tokens + 2 * block), repeats
            ),
            "view": best_seconds(lambda: forward.mask_for(block), repeats),
        }
    return {name: round(1e6 * seconds, 1) for name, seconds in timings.items()}


def loop_guard_us(tokens: int, repeats: int) -> dict[str, float]:
    """Microseconds per AR step of the repetition guard (``LoopGuard.update``), by batch size.

    The rows above run with the guards off so that every engine writes ``--tokens`` tokens from
    random weights, which loop at once; this is what the AR guard adds to each of its steps when
    it is on (the default). The block engines' guard is one comparison per block.
    """
    costs = {}
    for batch in (1, 16):
        out = torch.randint(0, 1000, (batch, tokens))
        active = torch.ones(batch, dtype=torch.bool)

        def run(out: torch.Tensor = out, active: torch.Tensor = active) -> None:
            guard = LoopGuard(out.shape[0], tokens, out.device)
            for step in range(tokens):
                guard.update(out, step, active)

        costs[f"batch {batch}"] = round(1e6 * best_seconds(run, repeats) / tokens, 1)
    return costs


def throughput_rows(
    vlm: VLM, context: torch.Tensor, mask: torch.Tensor, tokens: int
) -> list[dict[str, Any]]:
    """Reports per second against batch size, AR vs one-step (B = 8)."""
    rows = []
    for batch in (1, 4, 16, 64):
        ctx, msk = batched(context, mask, batch)
        for name, engine in (
            ("ar", AREngine(repetition_guard=False)),
            ("diffusion-onestep", OneStepEngine(8, repetition_guard=False, report_ngrams=False)),
        ):
            seconds = engine_seconds(engine, vlm, ctx, msk, tokens, 2)
            rows.append({"engine": name, "batch": batch, "reports_per_s": batch / seconds})
    return rows


def crossover(throughput: list[dict[str, Any]]) -> str:
    """The smallest measured batch at which AR writes more reports per second than one-step."""
    rate = {(r["engine"], r["batch"]): r["reports_per_s"] for r in throughput}
    batches = sorted({r["batch"] for r in throughput})
    ratios = ", ".join(
        f"{b}: {rate[('diffusion-onestep', b)] / rate[('ar', b)]:.2f}x" for b in batches
    )
    first = next((b for b in batches if rate[("ar", b)] > rate[("diffusion-onestep", b)]), None)
    where = f"AR is faster from batch {first} on" if first else "no crossover up to batch"
    return f"One-step over AR, reports/s by batch: {ratios}; {where}" + (
        "." if first else f" {batches[-1]} on this CPU."
    )


def table(rows: list[dict[str, Any]]) -> Iterator[str]:
    keys = list(dict.fromkeys(key for row in rows for key in row))  # union, first-seen order
    yield "| " + " | ".join(keys) + " |"
    yield "|" + "---|" * len(keys)
    for row in rows:
        cells = (
            f"{row[k]:.3g}" if isinstance(row.get(k), float) else str(row.get(k, "")) for k in keys
        )
        yield "| " + " | ".join(cells) + " |"


def throughput_plot(
    series: dict[str, list[tuple[int, float]]], title: str, path: Path, log_y: bool = False
) -> None:
    """Reports per second against batch size, a line per engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    for name, points in series.items():
        axis.plot(*zip(*points, strict=True), marker="o", label=name)
    axis.set(
        xscale="log",
        yscale="log" if log_y else "linear",
        xlabel="batch size",
        ylabel="reports / s",
        title=title,
    )
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vlm, context, mask = build_backbone("sdpa")
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": args.threads,
            "torch": torch.__version__,
        },
        "tokens_per_report": args.tokens,
        "context_tokens": context.shape[1],
        "latency": latency_rows(vlm, context, mask, args.tokens, args.repeats),
        "mask_us": {
            f"B={b}": mask_cost_us(vlm, context, mask, b, args.tokens, 50) for b in (4, 8, 16)
        },
        "lean_forward": lean_forward_rows(args.tokens, args.repeats),
        "loop_guard_us_per_step": loop_guard_us(args.tokens, args.repeats),
        "throughput": throughput_rows(vlm, context, mask, args.tokens),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engines.json").write_text(json.dumps(result, indent=2) + "\n")
    throughput_plot(
        {
            name: [
                (r["batch"], r["reports_per_s"])
                for r in result["throughput"]
                if r["engine"] == name
            ]
            for name in ("ar", "diffusion-onestep")
        },
        "Throughput, ar-tiny, 1 CPU thread",
        RESULTS / "engines.png",
    )
    lines = [
        "# Decoding engines: AR vs fused one-step block diffusion",
        "",
        "The ar-tiny backbone with random weights (speed does not depend on the weights).",
        "",
        f"{args.tokens} tokens per report, context {context.shape[1]} tokens, "
        f"{args.threads} CPU thread(s), torch {torch.__version__}, fastest of {args.repeats} "
        f"runs in process CPU time; load average {os.getloadavg()[0]:.1f} at the end",
        "(a 2-core VM: neighbours on its host do not show in the load average; rows of one table",
        "still share the same conditions).",
        "From `benchmarks/engines.py`.",
        "",
        "## Batch-1 latency, fused ceiling and engine overhead",
        "",
        *table(result["latency"]),
        "",
        "`ceiling` = B * t(1) / t(2B). `ms_per_block` = (engine time - prefill) / (blocks - 1),",
        "the steady state; `overhead_vs_bare` divides it by the bare 2B-token forward (no mask),",
        "`overhead_vs_fused` by the same forward through the engine's `BlockForward` (block mask",
        "view + cache crop): the rest is the engine's own per-block work (embedding, argmax, eos).",
        "",
        "## Lean forward: what each choice buys (ms per report)",
        "",
        *table(result["lean_forward"]),
        "",
        "Block mask, µs (`rebuild`: one `attention_bias` call per block, as the engine did",
        "before; `setup`: the whole generation's bias, built once; `view`: what a block pays",
        f"now): {json.dumps(result['mask_us'])}",
        "",
        "AR repetition guard (`LoopGuard`, on by default, off in these rows so every engine",
        "writes the same number of tokens from random weights), µs per AR step: "
        f"{json.dumps(result['loop_guard_us_per_step'])}; compare `t1_ms` above.",
        "",
        "## Throughput against batch size (B = 8)",
        "",
        *table(result["throughput"]),
        "",
        crossover(result["throughput"]),
        "",
        "What would move it on a GPU: there a batch-1 forward is bound by kernel launches and",
        "weight reads, not arithmetic, so one-step decoding keeps most of its B-fold advantage",
        "until the batch saturates the arithmetic units; from then on its two token-forwards per",
        "written token (the masked pass and the clean re-encode) cost twice AR's one. The",
        "crossover comes at a smaller batch when per-forward overhead falls (CUDA graphs, a static",
        "KV cache) or the model is wider, and at a larger batch when attention over a long",
        "context dominates (ECHO's ~2,870 visual tokens keep decoding bound by KV-cache reads).",
        "",
        "![throughput](engines.png)",
    ]
    (RESULTS / "engines.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
