"""The RAD saving: training cost of response-only duplication vs duplicating the whole sequence.

Run: ``nice -n 10 .venv/bin/python benchmarks/engines_rad_training.py [--threads 1]``.
Writes ``benchmarks/results/engines_rad_training.{md,json}``.

Two layouts train the same block-diffusion loss (ECHO_NOTES section 4):

- RAD: ``[context | noisy response | clean response]``, length ``Lc + 2 Lr``;
- full duplication (SDAR-style): ``[noisy copy of context+response | clean copy]``, ``2 (Lc + Lr)``.

Measured: wall time of one training step (forward + backward, AdamW excluded) of the ar-tiny
backbone on both layouts, at the phantom scale (64 visual tokens) and with 1,024 visual tokens.
Computed: training FLOPs per row, ``6 N L`` for the matrices plus ``12 n_layers L^2 D`` for dense
masked attention (forward 4 L^2 D per layer, backward twice that), for the tiny model and for a
7B decoder (Qwen2.5-7B shape, as ECHO's Lingshu-7B) with ECHO's ~2,870 visual tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from model.blocks import attention_bias
from model.config import TrainConfig

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).parent.parent
QWEN25_7B_PARAMS, QWEN25_7B_HIDDEN, QWEN25_7B_LAYERS = 6.53e9, 3584, 28  # non-embedding params


def training_flops(params: float, hidden: int, layers: int, length: int) -> float:
    """Forward + backward FLOPs of one row of ``length`` tokens (dense masked attention)."""
    return 6 * params * length + 12 * layers * length**2 * hidden


def layout(
    context_len: int, response_len: int, duplicate_context: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions and noisy flags of a RAD (or fully duplicated) training row, block size 8."""
    if duplicate_context:
        span = torch.arange(context_len + response_len)
        return torch.cat([span, span]), torch.arange(2 * span.numel()) < span.numel()
    response = torch.arange(context_len, context_len + response_len)
    positions = torch.cat([torch.arange(context_len), response, response])
    noisy = torch.zeros(positions.numel(), dtype=torch.bool)
    noisy[context_len : context_len + response_len] = True
    return positions, noisy


def step_seconds(
    lm: LlamaForCausalLM,
    rows: int,
    context_len: int,
    response_len: int,
    duplicate: bool,
    repeats: int,
) -> float:
    """Fastest (of ``repeats``, after a warm-up) forward + backward with the loss on the noisy
    response positions, in process CPU seconds (one thread): the CPU is shared with other jobs."""
    positions, noisy = layout(context_len, response_len, duplicate)
    bias = attention_bias(
        positions, noisy, positions, noisy, torch.ones(rows, positions.numel(), dtype=torch.bool), 8
    )
    embeds = torch.randn(rows, positions.numel(), lm.config.hidden_size)
    start = positions.numel() - 2 * response_len if not duplicate else context_len
    targets = torch.randint(0, lm.config.vocab_size, (rows, response_len))
    times = []
    for _ in range(repeats + 1):
        began = time.process_time()
        hidden = lm.model(
            inputs_embeds=embeds, attention_mask=bias, position_ids=positions[None]
        ).last_hidden_state
        logits = lm.lm_head(hidden[:, start : start + response_len])
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
        lm.zero_grad(set_to_none=True)
        times.append(time.process_time() - began)
    return min(times[1:])


def scale_row(
    name: str, lm: LlamaForCausalLM, rows: int, context_len: int, response_len: int, repeats: int
) -> dict[str, Any]:
    params = sum(p.numel() for n, p in lm.named_parameters() if "embed" not in n)
    d, layers = lm.config.hidden_size, lm.config.num_hidden_layers
    rad_len, dup_len = context_len + 2 * response_len, 2 * (context_len + response_len)
    rad_s = step_seconds(lm, rows, context_len, response_len, False, repeats)
    dup_s = step_seconds(lm, rows, context_len, response_len, True, repeats)
    rad_f, dup_f = (
        training_flops(params, d, layers, rad_len),
        training_flops(params, d, layers, dup_len),
    )
    return {
        "scale": name,
        "context": context_len,
        "response": response_len,
        "rad_tokens": rad_len,
        "dup_tokens": dup_len,
        "flops_saving": 1 - rad_f / dup_f,
        "rad_step_s": rad_s,
        "dup_step_s": dup_s,
        "measured_speedup": dup_s / rad_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    llama = dict(TrainConfig.from_file(REPO / "model/configs/ar-tiny.json").model.text.llama)
    llama["max_position_embeddings"] = 4096
    torch.manual_seed(0)
    config = LlamaConfig(**llama)
    config._attn_implementation = "sdpa"
    lm = LlamaForCausalLM(config).train()
    prompt = 16  # <bos> + report prompt tokens around the visual tokens
    measured = [
        scale_row("phantom (64 visual tokens)", lm, 8, 64 + prompt, 112, args.repeats),
        scale_row("1,024 visual tokens", lm, 2, 1024 + prompt, 112, args.repeats),
    ]
    computed = []
    for visual, response in ((1024, 112), (2870, 300)):
        context = visual + 40
        shape = (QWEN25_7B_PARAMS, QWEN25_7B_HIDDEN, QWEN25_7B_LAYERS)
        rad = training_flops(*shape, context + 2 * response)
        dup = training_flops(*shape, 2 * (context + response))
        computed.append(
            {
                "model": "Qwen2.5-7B shape",
                "visual": visual,
                "response": response,
                "flops_saving": 1 - rad / dup,
                "flops_ratio": dup / rad,
            }
        )
    RESULTS.mkdir(exist_ok=True)
    result = {
        "threads": args.threads,
        "measured_tiny": measured,
        "computed_7b": computed,
        "echo_reported": {"flops_saving": 0.723, "training_speedup": 3.61},
    }
    (RESULTS / "engines_rad_training.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# RAD vs full-sequence duplication: training cost per step",
        "",
        f"Measured on the ar-tiny decoder (4 x 256), {args.threads} CPU thread(s), forward +",
        f"backward, fastest of {args.repeats} in process CPU time; load average "
        f"{os.getloadavg()[0]:.1f} at the end.",
        "From `benchmarks/engines_rad_training.py`.",
        "",
        "| scale | context | response | RAD tokens | dup tokens | FLOPs saving | RAD s/step "
        "| dup s/step | speedup |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['scale']} | {r['context']} | {r['response']} | {r['rad_tokens']} | "
        f"{r['dup_tokens']} | "
        f"{r['flops_saving']:.1%} | {r['rad_step_s']:.3f} | {r['dup_step_s']:.3f} | "
        f"{r['measured_speedup']:.2f}x |"
        for r in measured
    ]
    lines += [
        "",
        "Computed for a 7B decoder (6.53e9 non-embedding parameters, width 3584, 28 layers):",
        "",
        "| visual tokens | response | FLOPs saving | dup / RAD |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['visual']} | {r['response']} | {r['flops_saving']:.1%} | {r['flops_ratio']:.2f}x |"
        for r in computed
    ]
    lines += [
        "",
        "Matrix FLOPs grow with tokens, a saving of 1 - (Lc + 2 Lr) / (2 Lc + 2 Lr) (about 45% "
        "at 2,870 visual tokens); dense attention grows with tokens squared (about 70% there).",
        "ECHO reports -72.3% theoretical FLOPs and a 3.61x training speedup (its section 1),",
        "close to the attention-only ratio; its counting is not given, so we report both terms.",
    ]
    (RESULTS / "engines_rad_training.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
