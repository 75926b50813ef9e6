"""The vision-language model: vision encoder -> MLP projector -> transformers causal LM.

One function, :meth:`VLM.build_context`, turns images and chat prompts into the embedded context
that training and every decoding engine (AR, block diffusion, one-step) continue from, so the
context is built identically everywhere.

Context layout of one row (left padding moved to the far left so that every row's continuation
starts at the same position, which batched decoding with a KV cache needs)::

    [<pad> ...] <bos> v_1 ... v_Nv  <|user|> question <|assistant|>
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlamaForCausalLM

from clinical_eval.observations import OBSERVATIONS
from model.config import VLMConfig
from model.projector import Projector
from model.report_ngrams import ReportNgrams
from model.tokenizer import Tokenizer
from model.vision import FindingTokens, build_vision, require_local_dir


def build_language_model(config: VLMConfig, tokenizer: Tokenizer) -> LlamaForCausalLM:
    """A Llama causal LM from config, or from a local directory resized to the tokenizer."""
    if config.text.pretrained_dir:
        directory = require_local_dir(config.text.pretrained_dir, "language model")
        lm = LlamaForCausalLM.from_pretrained(directory, local_files_only=True)
        lm.resize_token_embeddings(tokenizer.vocab_size)
    else:
        llama = config.text.to_llama()
        llama.vocab_size = tokenizer.vocab_size
        lm = LlamaForCausalLM(llama)
    lm.config.pad_token_id = tokenizer.pad_id
    lm.config.bos_token_id = tokenizer.bos_id
    lm.config.eos_token_id = tokenizer.eos_id
    lm.config.mask_token_id = tokenizer.mask_id
    return lm


class VLM(nn.Module):
    """Images + chat prompt in, next-token logits out (through ``self.lm``)."""

    def __init__(self, config: VLMConfig, tokenizer: Tokenizer) -> None:
        super().__init__()
        self.config = config
        self.bos_id = tokenizer.bos_id
        # the training reports' n-grams, for one-step decoding (model/report_ngrams.py); saved
        # and loaded with the checkpoint, not weights
        self.report_ngrams: ReportNgrams | None = None
        self.vision = build_vision(config.vision)
        self.lm = build_language_model(config, tokenizer)
        hidden = self.lm.config.hidden_size
        self.projector = Projector(config.projector, self.vision.out_dim, hidden)
        self.findings = (
            FindingTokens(self.vision.out_dim, hidden, len(OBSERVATIONS))
            if config.vision.finding_tokens
            else None
        )

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def embed_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` in [0, 1] -> visual tokens in the LM space ``(B, Nv, D)``."""
        return self.embed_images_with_findings(pixels)[0]

    def embed_images_with_findings(
        self, pixels: torch.Tensor, known_findings: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Visual tokens ``(B, Nv, D)`` and the finding logits ``(B, 14)`` (None without them).

        Nv counts the grid tokens and, when configured, the 14 finding tokens after them.
        ``known_findings`` (training only) overrides the predicted probabilities where not NaN.
        """
        features = self.vision(pixels)  # (B, g*g, C)
        visual = self.projector(features)  # (B, g*g, D)
        if self.findings is None:
            return visual, None
        finding_tokens, logits = self.findings(features, known_findings)  # (B, 14, D)
        return torch.cat([visual, finding_tokens], 1), logits

    def image_signals(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled vision features ``(B, C)`` and finding-head logits ``(B, 14)``: what the trust
        signals read (model/trust_stats.py), from the same encoder the draft is written from."""
        if self.findings is None:
            raise ValueError("this checkpoint has no finding head: no trust signals")
        pooled = self.vision(pixels).mean(1)  # (B, C), what the finding head reads
        return pooled, self.findings.head(pooled)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)  # (B, L) -> (B, L, D)

    def assemble_context(
        self, visual: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Join ``<bos>``, visual tokens and the prompt; move padding to the far left.

        Split from :meth:`build_context` so training can embed each image once and reuse it for
        the report row and the Q&A rows of the same study.
        """
        B, Nv, _ = visual.shape
        bos = torch.full((B, 1), self.bos_id, dtype=prompt_ids.dtype, device=prompt_ids.device)
        embeds = torch.cat([self.embed_tokens(bos), visual, self.embed_tokens(prompt_ids)], 1)
        ones = torch.ones(B, 1 + Nv, dtype=prompt_mask.dtype, device=prompt_mask.device)
        mask = torch.cat([ones, prompt_mask], 1)  # (B, Lc)
        # stable sort on the mask puts pads (0) first and keeps real tokens in order
        order = torch.sort(mask, dim=1, stable=True).indices  # (B, Lc)
        embeds = torch.gather(embeds, 1, order.unsqueeze(-1).expand_as(embeds))
        return embeds, torch.gather(mask, 1, order)  # (B, Lc, D), (B, Lc)

    def build_context(
        self, pixels: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(B, 1, H, W)`` + prompt ``(B, Lp)`` -> ``(embeds (B, Lc, D), mask (B, Lc))``."""
        return self.assemble_context(self.embed_images(pixels), prompt_ids, prompt_mask)
