"""Vision encoders: a small CNN for the tiny model, or a local pretrained transformers tower.

Both map a grayscale batch ``(B, 1, H, W)`` to a token grid ``(B, Nv, C)``. The CNN is trained
jointly with the language model (Mipha found that freezing the vision backbone hurts small models).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from torch import nn

from model.config import VisionConfig


class PretrainedDirError(FileNotFoundError):
    """A configured local pretrained directory is missing; nothing is fetched from a hub."""


def require_local_dir(path: str, what: str) -> Path:
    """Return ``path`` if it holds a transformers ``config.json``, else say what to put there."""
    directory = Path(path)
    if not (directory / "config.json").is_file():
        raise PretrainedDirError(
            f"{what} directory {directory} has no config.json: put a transformers "
            f"`save_pretrained` export of the {what} there (nothing is downloaded)"
        )
    return directory


class ConvStage(nn.Module):
    """Conv(stride 2) -> GroupNorm -> GELU -> Conv -> GroupNorm -> GELU, halving the side.

    GroupNorm rather than BatchNorm: batch statistics would differ between training, single-image
    inference and DDP ranks.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
            nn.GroupNorm(8, c_out),
            nn.GELU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.GroupNorm(8, c_out),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class CNNEncoder(nn.Module):
    """Strided CNN then adaptive pooling to a fixed ``grid x grid`` of visual tokens."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        widths = (1, *config.channels)
        self.stages = nn.Sequential(*(ConvStage(a, b) for a, b in itertools.pairwise(widths)))
        self.pool = nn.AdaptiveAvgPool2d(config.grid)
        # a learned position per grid cell: the LM must know where a finding sits (left/right)
        self.pos = nn.Parameter(torch.zeros(1, config.num_tokens, config.out_dim))
        self.out_dim: int = config.out_dim

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stages(pixels))  # (B, C, g, g)
        return x.flatten(2).transpose(1, 2) + self.pos  # (B, g*g, C)


class PretrainedEncoder(nn.Module):
    """A transformers vision model from a local directory; grayscale is repeated to RGB."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        from transformers import AutoModel

        assert config.pretrained_dir is not None
        directory = require_local_dir(config.pretrained_dir, "vision tower")
        model = AutoModel.from_pretrained(directory, local_files_only=True)
        self.tower = getattr(model, "vision_model", model)
        self.pool = nn.AdaptiveAvgPool1d(config.num_tokens)
        self.out_dim: int = int(self.tower.config.hidden_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden = self.tower(
            pixel_values=pixels.expand(-1, 3, -1, -1)
        ).last_hidden_state  # (B, N, C)
        return self.pool(hidden.transpose(1, 2)).transpose(1, 2)  # (B, Nv, C)


class FindingTokens(nn.Module):
    """One language-model token per observation: a mix of a "present" and an "absent" embedding.

    A linear head reads the observation probabilities off the mean of the grid features; token
    ``i`` is ``p_i * present_i + (1 - p_i) * absent_i``. The two embeddings live in the language
    model's space at its word-embedding scale, like 28 extra words, so the language model reads
    them as easily as text (through the projector, at the grid features' scale, they stayed
    indistinguishable noise); the gradient of the report loss still reaches the head through p.
    """

    def __init__(self, feature_dim: int, embed_dim: int, count: int) -> None:
        super().__init__()
        self.head = nn.Linear(feature_dim, count)
        self.present = nn.Parameter(torch.randn(count, embed_dim) * 0.02)
        self.absent = nn.Parameter(torch.randn(count, embed_dim) * 0.02)

    def forward(
        self, grid_features: torch.Tensor, known: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, N, C)`` -> tokens ``(B, count, D)`` and logits ``(B, count)``.

        ``known`` ``(B, count)``: probabilities to use instead of the head's where not NaN
        (the ground truth, during training only).
        """
        logits = self.head(grid_features.mean(1))
        p = torch.sigmoid(logits)
        if known is not None:
            p = torch.where(torch.isnan(known), p, known)
        p = p.unsqueeze(-1)  # (B, count, 1)
        return p * self.present + (1 - p) * self.absent, logits


def build_vision(config: VisionConfig) -> CNNEncoder | PretrainedEncoder:
    return PretrainedEncoder(config) if config.pretrained_dir else CNNEncoder(config)
