"""The ``Report`` object and the ``ReportGenerator`` that writes reports from images.

Every report carries the model id, the checkpoint's weight hash and the engine that wrote it, so a
stored report can always say which model produced it (DESIGN.md, contracts).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from model.checkpoint import LoadedCheckpoint
from model.data.qa import REPORT_PROMPT
from model.data.transforms import ImageInputError, images_to_batch
from model.generation import Engine
from model.tokenizer import pad_rows
from model.trust import Trust
from model.trust_stats import CriticalPolicy, image_signals

SECTION = re.compile(
    r"FINDINGS:\s*(?P<findings>.*?)\s*(?:IMPRESSION:\s*(?P<impression>.*))?$", re.S
)


class PromptTooLongError(ValueError):
    """Visual tokens + prompt + response would exceed the language model's positions."""


def parse_report(text: str) -> tuple[str, str]:
    """Split ``FINDINGS: ... IMPRESSION: ...`` into its two sections (empty when absent)."""
    match = SECTION.search(text.strip())
    if match is None:
        return text.strip(), ""
    return match["findings"].strip(), (match["impression"] or "").strip()


def label_texts(texts: list[str]) -> list[dict[str, int | None]] | None:
    """Per-observation labels from the project's labeler; None while it is not installed."""
    try:
        from clinical_eval import label
    except ImportError:
        return None
    return [dict(labels) for labels in label(texts)]


@dataclass
class Report:
    """A preliminary report and its provenance."""

    findings: str
    impression: str
    labels: dict[str, int | None] | None
    timings: dict[str, float]
    model_id: str
    checkpoint_sha256: str
    engine: str
    engine_options: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    trust: Trust | None = None  # None where the checkpoint ships no trust statistics

    @property
    def text(self) -> str:
        return f"FINDINGS: {self.findings}\nIMPRESSION: {self.impression}"

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["trust"] = None if self.trust is None else self.trust.to_json()
        return document


class ReportGenerator:
    """Images in, reports out, through one checkpoint and one decoding engine."""

    def __init__(
        self,
        checkpoint: LoadedCheckpoint,
        engine: Engine,
        batch_size: int = 16,
        critical: CriticalPolicy | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self.vlm = checkpoint.vlm
        self.tokenizer = checkpoint.tokenizer
        self.engine = engine
        self.batch_size = batch_size
        # which observations mark a draft critical (default: pneumothorax at its fitted threshold)
        self.critical = critical or CriticalPolicy()

    @property
    def image_size(self) -> int:
        return self.vlm.config.image_size

    def to_pixels(self, images: Sequence[np.ndarray] | torch.Tensor) -> torch.Tensor:
        """Validate a list of ``(H, W)`` float32 arrays, or a ``(B, 1, S, S)`` tensor."""
        if isinstance(images, torch.Tensor):
            expected = (1, self.image_size, self.image_size)
            if images.ndim != 4 or tuple(images.shape[1:]) != expected or images.shape[0] == 0:
                raise ImageInputError(
                    f"expected a tensor (B, {expected}), got {tuple(images.shape)}"
                )
            return images.float()
        return images_to_batch(list(images), self.image_size)

    def check_length(self, prompt_len: int, max_new_tokens: int) -> None:
        limit = int(self.vlm.lm.config.max_position_embeddings)
        needed = 1 + self.vlm.config.num_visual_tokens + prompt_len + max_new_tokens
        if needed > limit:
            raise PromptTooLongError(
                f"prompt of {prompt_len} tokens + {max_new_tokens} new tokens needs {needed} "
                f"positions; the model has {limit}: shorten the question or the history"
            )

    def decode(
        self, pixels: torch.Tensor, prompts: list[list[int]], max_new_tokens: int
    ) -> tuple[list[str], float, int]:
        """Run the engine on one batch; returns texts, seconds and forward passes."""
        for prompt in prompts:
            self.check_length(len(prompt), max_new_tokens)
        ids, mask = pad_rows(prompts, self.tokenizer.pad_id, left=True)
        device = self.vlm.device
        with torch.inference_mode():
            embeds, context_mask = self.vlm.build_context(
                pixels.to(device), ids.to(device), mask.to(device)
            )
        out = self.engine.generate(self.vlm, embeds, context_mask, max_new_tokens=max_new_tokens)
        return [self.tokenizer.decode(row) for row in out.token_ids], out.seconds, out.forwards

    def generate(
        self,
        images: Sequence[np.ndarray] | torch.Tensor,
        *,
        max_new_tokens: int | None = None,
        label: bool = True,
    ) -> list[Report]:
        """One report per image, decoded in batches of ``batch_size``."""
        start = time.perf_counter()
        pixels = self.to_pixels(images)
        prepared = time.perf_counter()
        limit = max_new_tokens or self.vlm.config.max_response_tokens
        prompt = self.tokenizer.chat_prompt(REPORT_PROMPT)
        texts: list[str] = []
        decode_seconds, forwards = 0.0, 0
        for first in range(0, pixels.shape[0], self.batch_size):
            chunk = pixels[first : first + self.batch_size]
            batch_texts, seconds, calls = self.decode(chunk, [prompt] * chunk.shape[0], limit)
            texts += batch_texts
            decode_seconds += seconds
            forwards += calls
        labels = label_texts(texts) if label else None
        trust = self.trust_signals(pixels, texts, label)
        timings = {
            "preprocess_s": prepared - start,
            "decode_s": decode_seconds,
            "total_s": time.perf_counter() - start,
            "forwards": float(forwards),
            "reports": float(len(texts)),  # the times and forwards above cover all of them
        }
        return [
            self.make_report(text, None if labels is None else labels[i], timings, trust[i])
            for i, text in enumerate(texts)
        ]

    def trust_signals(
        self, pixels: torch.Tensor, texts: list[str], label: bool
    ) -> list[Trust | None]:
        """Each draft's trust signals; None for all where the checkpoint has no statistics.

        The consistency checks read the labels of each section alone, so they run only when
        the drafts are labelled (``label=True``).
        """
        statistics = self.checkpoint.trust
        if statistics is None:
            return [None] * len(texts)
        features, logits = image_signals(self.vlm, pixels, self.batch_size)
        sections = [parse_report(text) for text in texts]
        labelled = (
            label_texts([f for f, _ in sections] + [i for _, i in sections]) if label else None
        )
        return [
            statistics.trust(
                features[row],
                logits[row],
                None if labelled is None else (labelled[row], labelled[len(texts) + row]),
                self.critical,
            )
            for row in range(len(texts))
        ]

    def make_report(
        self,
        text: str,
        labels: dict[str, int | None] | None,
        timings: dict[str, float],
        trust: Trust | None = None,
    ) -> Report:
        findings, impression = parse_report(text)
        return Report(
            findings,
            impression,
            labels,
            dict(timings),
            self.checkpoint.model_id,
            self.checkpoint.weights_sha256,
            self.engine.name,
            dict(self.engine.options),  # the same weights decode differently with other options
            trust=trust,
        )
