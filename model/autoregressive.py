"""The autoregressive engine: the stage-1 model writes one token per forward.

It is kept lean because it is the baseline every diffusion speed-up is measured against: one
prefill, then one single-token forward per step against a ``DynamicCache``, under
``torch.inference_mode``, with the attention mask preallocated once for the whole generation and
only the last position projected to the vocabulary.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch
from transformers import DynamicCache

from model.generation import ActiveRows, EngineError, Generation, strip_eos

if TYPE_CHECKING:
    from model.vlm import VLM


def pick_next(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Greedy when ``temperature == 0``, else nucleus sampling; ``(B, V) -> (B,)``."""
    if temperature == 0.0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, -1)
    sorted_probs, order = probs.sort(-1, descending=True)
    # drop tokens once the mass before them already exceeds top_p (the first token always stays)
    sorted_probs[(sorted_probs.cumsum(-1) - sorted_probs) > top_p] = 0.0
    choice = torch.multinomial(sorted_probs, 1, generator=generator)  # (B, 1)
    return order.gather(-1, choice).squeeze(-1)


class LoopGuard:
    """Finds rows whose newest span of ``p`` tokens is the third copy in a row of the same span.

    Greedy decoding that falls into a loop writes the same span again and again until the length
    cap, and a draft that says "No pneumothorax. No pneumothorax. ..." reaches the reader. Two
    copies in a row are not enough to call a loop: "Right pleural effusion. Left pleural
    effusion. Left ..." holds "pleural effusion. Left" twice and is a correct report. Three
    copies of a span of ``min_period`` to ``max_period`` tokens are; the row ends after the first
    copy and the others are dropped. Loops of a shorter period (one token again and again) are
    caught too: they also repeat with a period of ``min_period`` or more. Per period it keeps how
    many steps in a row the newest token has equalled the token ``p`` back, so a step costs a
    handful of tensor operations, not a scan.
    """

    COPIES = 3

    def __init__(
        self,
        rows: int,
        steps: int,
        device: torch.device,
        min_period: int = 3,
        max_period: int = 32,
    ) -> None:
        self.periods = torch.arange(min_period, max_period + 1, device=device)  # (P,)
        lags = torch.arange(steps, device=device)[:, None] - self.periods  # (steps, P)
        self.earlier, self.has_earlier = lags.clamp(min=0), lags >= 0  # built once, not per step
        self.runs = torch.zeros(rows, len(self.periods), dtype=torch.long, device=device)
        self.loop_runs = (self.COPIES - 1) * self.periods  # the run that makes COPIES copies

    def update(self, out: torch.Tensor, step: int, active: torch.Tensor) -> dict[int, int]:
        """After ``out[:, step]`` is written: {row: where its repeats start} for looping rows.

        Only ``active`` rows count; the repeats run from that index to ``step`` inclusive.
        """
        same = out[:, self.earlier[step]] == out[:, step : step + 1]  # (R, P)
        self.runs.add_(1).mul_(same & self.has_earlier[step] & active[:, None])
        looping = self.runs >= self.loop_runs
        if not bool(looping.any()):
            return {}
        first = looping.float().argmax(1)  # the shortest period that loops
        rows = looping.any(1).nonzero().flatten().tolist()
        return {row: step + 1 - int(self.loop_runs[first[row]]) for row in rows}

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Follow a batch that dropped every row but ``rows`` (:class:`ActiveRows`)."""
        self.runs = self.runs[rows]


class AREngine:
    """Left-to-right decoding with a KV cache; stops when every row has produced ``<eos>``.

    Parameters
    ----------
    temperature : float
        0 for greedy decoding (the default, used by reports and benchmarks).
    top_p : float
        Nucleus mass kept when sampling.
    seed : int or None
        Seeds the sampling generator so sampled outputs are reproducible.
    repetition_guard : bool
        End a row at the third copy in a row of a span of 3 to 32 tokens, keeping the first
        (:class:`LoopGuard`); the block engines' guard ends a row at a repeated block.

    ``drop_finished_rows`` (not an option: greedy outputs do not depend on it, so drafts do not
    record it) drops ended rows from the batch (:class:`ActiveRows`); benchmarks turn it off to
    measure what it buys. Sampled outputs do change with it: the generator draws for fewer rows.
    """

    name = "ar"
    options: dict[str, Any]  # set by get_engine
    drop_finished_rows = True

    def __init__(
        self,
        temperature: float = 0.0,
        top_p: float = 0.9,
        seed: int | None = None,
        repetition_guard: bool = True,
    ) -> None:
        if temperature < 0 or not 0 < top_p <= 1:
            raise EngineError(
                f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}"
            )
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.repetition_guard = repetition_guard

    @torch.inference_mode()
    def generate(
        self,
        vlm: VLM,
        context_embeds: torch.Tensor,
        context_mask: torch.Tensor,
        *,
        max_new_tokens: int,
    ) -> Generation:
        start = time.perf_counter()
        B, Lc, _ = context_embeds.shape
        eos_id: int = vlm.lm.config.eos_token_id  # type: ignore[assignment]
        generator = None
        if self.seed is not None:
            generator = torch.Generator(context_embeds.device).manual_seed(self.seed)
        # one mask for the whole run; each step passes a prefix view of it
        mask = torch.ones(
            B, Lc + max_new_tokens, dtype=context_mask.dtype, device=context_mask.device
        )
        mask[:, :Lc] = context_mask
        out = torch.full(
            (B, max_new_tokens), eos_id, dtype=torch.long, device=context_embeds.device
        )  # (rows still decoding, T)
        rows = ActiveRows(B, max_new_tokens, eos_id, context_embeds.device)
        done = torch.zeros(B, dtype=torch.bool, device=context_embeds.device)
        guard = (
            LoopGuard(B, max_new_tokens, context_embeds.device) if self.repetition_guard else None
        )
        cache = DynamicCache()
        logits = vlm.lm(
            inputs_embeds=context_embeds,
            attention_mask=context_mask,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1]  # (rows, V)
        forwards, steps = 1, 0
        while steps < max_new_tokens:
            token = pick_next(logits, self.temperature, self.top_p, generator)
            token = token.masked_fill(done, eos_id)
            out[:, steps] = token
            if guard is not None:
                for row, repeats_start in guard.update(out, steps, ~done).items():
                    out[row, repeats_start : steps + 1] = eos_id
                    done[row] = True
            steps += 1
            done |= token == eos_id
            if bool(done.all()) or steps == max_new_tokens:
                break
            if self.drop_finished_rows and rows.worth_dropping(done):
                keep = rows.drop(done, out[:, :steps])
                out, done, mask, token = out[keep], done[keep], mask[keep], token[keep]
                cache.batch_select_indices(keep)
                if guard is not None:
                    guard.keep_rows(keep)
            logits = vlm.lm(
                input_ids=token[:, None],
                attention_mask=mask[:, : Lc + steps],
                cache=cache,
                use_cache=True,
            ).logits[:, -1]
            forwards += 1
        ids = [strip_eos(row, eos_id) for row in rows.finish(out[:, :steps]).tolist()]
        return Generation(token_ids=ids, forwards=forwards, seconds=time.perf_counter() - start)
