"""What every decoding engine shares: its interface, its result, its errors, its batch rows.

The engines (:mod:`model.autoregressive`, :mod:`model.sampling`) continue the same context from
:meth:`model.vlm.VLM.build_context` and report how many forward passes they ran, so speed
comparisons between engines count the same thing; :mod:`model.decoding` names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

    from model.vlm import VLM


class EngineError(ValueError):
    """Unknown engine name or invalid decoding option."""


@dataclass
class Generation:
    """Generated ids per row (without the ``<eos>``), forward passes run and wall time."""

    token_ids: list[list[int]]
    forwards: int
    seconds: float


class Engine(Protocol):
    name: str
    options: dict[
        str, Any
    ]  # every constructor option, defaults included (:func:`model.decoding.get_engine`)

    def generate(
        self,
        vlm: VLM,
        context_embeds: torch.Tensor,
        context_mask: torch.Tensor,
        *,
        max_new_tokens: int,
    ) -> Generation: ...


class ActiveRows:
    """Which rows of a batch are still decoding, and the outputs of those that were dropped.

    A batch runs until its longest report ends, and without this every forward carries the rows
    that have already ended: at batch 64 the AR engine ran 121 forwards for 48.6 tokens a report.
    Dropping finished rows, with their KV, makes a forward cost what the rows still writing
    need. Dropping copies the cache, so it waits until ``DROP_FRACTION`` of the rows still in the
    batch have ended: a batch of 64 is cut at most 12 times, not 63.
    """

    DROP_FRACTION = 0.25  # 0.01-0.25 alike, 0.5 slowest (docs/decisions/016-row-dropping.md)

    def __init__(self, rows: int, width: int, fill: int, device: torch.device) -> None:
        self.index = torch.arange(rows, device=device)  # the batch row of each row still decoding
        self.out = torch.full((rows, width), fill, dtype=torch.long, device=device)

    def worth_dropping(self, done: torch.Tensor) -> bool:
        finished = int(done.sum())
        return 0 < finished < len(done) and finished >= self.DROP_FRACTION * len(done)

    def drop(self, done: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        """Keep the ``done`` rows' ``written`` ids (R, T) as output; the indices of the others."""
        self.out[self.index[done], : written.shape[1]] = written[done]
        keep = (~done).nonzero().flatten()
        self.index = self.index[keep]
        return keep

    def finish(self, written: torch.Tensor) -> torch.Tensor:
        """Every row's ids (batch rows, T) once the rows still decoding wrote ``written``."""
        self.out[self.index, : written.shape[1]] = written
        return self.out[:, : written.shape[1]]


def strip_eos(row: list[int], eos_id: int) -> list[int]:
    return row[: row.index(eos_id)] if eos_id in row else row


def special_id(lm: LlamaForCausalLM, name: str) -> int:
    """A special token id from the LM config (``eos_token_id``, ``mask_token_id``), checked."""
    value = getattr(lm.config, name, None)
    if not isinstance(value, int):
        raise EngineError(
            f"the language model config has no single {name}; is this an EchoCXR checkpoint?"
        )
    return value
