"""The 2-layer MLP projector from visual features to the LM embedding space (LLaVA-1.5)."""

from __future__ import annotations

import torch
from torch import nn

from model.config import ProjectorConfig


class Projector(nn.Module):
    """Linear -> GELU -> Linear, applied to every visual token independently."""

    def __init__(self, config: ProjectorConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, config.hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(config.hidden_dim, out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(features)))  # (B, Nv, C) -> (B, Nv, D)
