"""The 2-layer MLP projector from visual features to the LM embedding space (LLaVA-1.5).

A LayerNorm comes first (as in Qwen2-VL's merger): the tiny CNN's features have no fixed scale,
and visual tokens 20x the norm of the word embeddings left the language model's gradient to the
image ~100x smaller than to the text (measured on the first phantom run).
"""

from __future__ import annotations

import torch
from torch import nn

from model.config import ProjectorConfig


class Projector(nn.Module):
    """LayerNorm -> Linear -> GELU -> Linear, applied to every visual token independently."""

    def __init__(self, config: ProjectorConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.fc1 = nn.Linear(in_dim, config.hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(config.hidden_dim, out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(features))))  # (B, Nv, C) -> (B, Nv, D)
