"""DCD phase 2's objective: the student, from fully masked blocks, against the teacher's targets.

(ECHO Alg. 1 and sections 4.2-4.3.) The student (initialised from the teacher) sees the context,
the shard's blocks as clean blocks and a fully masked copy as noisy blocks, i.e. the RAD layout
of :mod:`model.blocks` with every response position masked; one forward trains all blocks:

    L = sum_i w_i KL(P_teacher_i || p_student_i) / sum_i 1  +  lambda * CE(eos position)

with ``w_i = step_i / mean(step)`` (ECHO's step-wise weighting: late commits depend most on the
tokens committed before them), forward KL, over generated positions up to and including the first
``<eos>`` (decoding truncates there). The factorized baseline swaps the targets for the step-1
marginals and uses uniform weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from model.blocks import first_block_start, make_canvas, rad_sequence, response_logits, token_count

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM


def coarse_kl(
    target_ids: torch.Tensor, target_probs: torch.Tensor, student_logits: torch.Tensor
) -> torch.Tensor:
    """KL(target || student) per position on the top-k tokens plus one bucket for the rest."""
    log_q = student_logits.float().log_softmax(-1)
    log_q_top = log_q.gather(-1, target_ids)  # (R, W, k)
    q_rest = (1 - log_q_top.exp().sum(-1, keepdim=True)).clamp(min=1e-8)
    log_q_all = torch.cat([log_q_top, q_rest.log()], -1)  # (R, W, k+1)
    p = target_probs.float()
    return (p * (p.clamp(min=1e-8).log() - log_q_all)).sum(-1)


def one_step_logits(
    lm: LlamaForCausalLM,
    context: torch.Tensor,
    context_mask: torch.Tensor,
    tokens: torch.Tensor,
    *,
    block_size: int,
    mask_id: int,
    eos_id: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's one-forward logits for every block of ``tokens`` (R, W), each block fully
    masked and given the blocks before it: ``(logits (R, Wc, V), upto (R, Wc))``.

    ``upto`` marks the positions up to and including a row's first ``<eos>`` (decoding truncates
    there). Wc <= W: the rollout ran as long as its longest row, which may be a looping row
    filtered out by :func:`kept_rows`; the canvas ends with the remaining rows' last ``<eos>``
    block, and nothing after it is scored.
    """
    W = tokens.shape[1]
    is_eos = tokens == eos_id
    first_eos = torch.where(is_eos.any(1), is_eos.int().argmax(1), W - 1)
    upto = torch.arange(W, device=tokens.device)[None] <= first_eos[:, None]  # (R, W)
    tail = context.shape[1] - first_block_start(context.shape[1], block_size)
    canvas = make_canvas(tokens.masked_fill(~upto, eos_id), upto.long(), tail, block_size, eos_id)
    noisy = torch.full_like(canvas.tokens, mask_id)
    logits = response_logits(lm, rad_sequence(lm, context, context_mask, canvas, noisy))[:, :W]
    return logits, upto[:, : logits.shape[1]]


def target_distribution(
    shard: dict[str, torch.Tensor], target: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's per-position target as ``(ids (R, W, k), probs (R, W, k + 1))``."""
    if target == "factorized":
        return shard["first_ids"], shard["first_probs"]
    return shard["commit_ids"], shard["commit_probs"]


def dcd_loss(
    lm: LlamaForCausalLM,
    context: torch.Tensor,
    context_mask: torch.Tensor,
    shard: dict[str, torch.Tensor],
    *,
    block_size: int,
    mask_id: int,
    eos_id: int,
    target: str = "conditional",
    step_weighting: bool = True,
    eos_weight: float = 1.0,
    tokens_per_row: float | None = None,
) -> torch.Tensor:
    """Step-weighted forward KL at every generated position + CE on the ``<eos>`` position.

    The KL is averaged over the shard's positions, or, given ``tokens_per_row``, summed and
    divided by rows x that constant (length-bucketed shards, :func:`model.diffusion.rad_loss`).
    """
    tokens = shard["tokens"]
    logits, upto = one_step_logits(
        lm, context, context_mask, tokens, block_size=block_size, mask_id=mask_id, eos_id=eos_id
    )  # (R, Wc, V), (R, Wc)
    R, Wc = upto.shape
    ids, probs = target_distribution(shard, target)
    kl = coarse_kl(ids[:, :Wc], probs[:, :Wc], logits)
    weight = shard["steps"][:, :Wc].float() if step_weighting else torch.ones_like(kl)
    weight = weight * upto / (weight * upto).sum().clamp(min=1e-8) * upto.sum()  # mean 1
    # The <eos> the teacher committed (its top-1), within what the student's report keeps:
    # phase 1's own tokens, or where the teacher would stop after a student's prefix.
    teacher_eos = (shard["commit_ids"][:, :Wc, 0] == eos_id) & upto
    eos_rows = teacher_eos.any(1)
    eos_at = teacher_eos.int().argmax(1)
    eos_logits = logits[torch.arange(R, device=tokens.device), eos_at][eos_rows]
    ce = (
        torch.nn.functional.cross_entropy(
            eos_logits.float(), torch.full((eos_logits.shape[0],), eos_id, device=tokens.device)
        )
        if bool(eos_rows.any())
        else logits.sum() * 0
    )
    return (weight * kl).sum() / token_count(upto, tokens_per_row) + eos_weight * ce


def kept_rows(shard: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    keep = shard["keep"]
    return {name: value[keep] for name, value in shard.items()}
