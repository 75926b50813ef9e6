"""The assistant: questions about a study answered by the stage-1 model.

It shares the report model's context builder; a conversation's earlier turns travel in the prompt
(``Tokenizer.chat_prompt``), so the model sees the image and the whole dialogue each time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from model.data.transforms import ImageInputError
from model.report import ReportGenerator

MAX_ANSWER_TOKENS = 48


class QuestionError(ValueError):
    """The question is empty or not text."""


def ask(
    generator: ReportGenerator,
    images: Sequence[np.ndarray] | torch.Tensor,
    question: str,
    history: Sequence[tuple[str, str]] = (),
) -> str:
    """Answer ``question`` about one study.

    Parameters
    ----------
    generator : ReportGenerator
        A loaded stage-1 model (``model.load(dir, engine="ar")``).
    images : list of (H, W) float32 arrays in [0, 1], or a (1, 1, S, S) tensor
        The study's images; the tiny model reads one frontal view, the first one.
    question : str
        Free text, e.g. "Is there a pleural effusion?".
    history : sequence of (question, answer)
        Earlier turns of the same conversation.
    """
    if not isinstance(question, str) or not question.strip():
        raise QuestionError("question must be a non-empty string")
    if len(images) == 0:
        raise ImageInputError("empty study: pass at least one image")
    pixels = generator.to_pixels(images[:1])
    prompt = generator.tokenizer.chat_prompt(question.strip(), history)
    texts, _, _ = generator.decode(pixels, [prompt], MAX_ANSWER_TOKENS)
    return texts[0]
