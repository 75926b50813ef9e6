"""A small byte-level BPE tokenizer trained on the training reports, plus the chat format.

A vocabulary of about a thousand pieces turns most report words into one token, which keeps both
the embedding table of the tiny model and the number of decoding steps small. Byte-level means
any text encodes (no unknown token), so a question with a typo still reaches the model.

Chat format (after the visual tokens, which ``VLM.build_context`` inserts):
``<|user|> question <|assistant|> answer <eos> <|user|> ... <|assistant|>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>",
    "<bos>",
    "<eos>",
    "<mask>",
    "<image>",
    "<|user|>",
    "<|assistant|>",
)
TOKENIZER_FILE = "tokenizer.json"


class TokenizerError(ValueError):
    """The tokenizer file is missing or lacks the special tokens this project needs."""


class Tokenizer:
    """Wrap a ``tokenizers.Tokenizer`` with the ids of the special tokens used everywhere."""

    def __init__(self, backend: HFTokenizer) -> None:
        self.backend = backend
        found = {tok: backend.token_to_id(tok) for tok in SPECIAL_TOKENS}
        missing = [tok for tok, idx in found.items() if idx is None]
        if missing:
            raise TokenizerError(f"tokenizer lacks special tokens {missing}")
        ids = {tok: int(idx) for tok, idx in found.items() if idx is not None}
        self.pad_id: int = ids["<pad>"]
        self.bos_id: int = ids["<bos>"]
        self.eos_id: int = ids["<eos>"]
        self.mask_id: int = ids["<mask>"]
        self.image_id: int = ids["<image>"]
        self.user_id: int = ids["<|user|>"]
        self.assistant_id: int = ids["<|assistant|>"]

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 1024) -> Tokenizer:
        """Learn a byte-level BPE on ``texts``; the special tokens take the first ids."""
        backend = HFTokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        backend.train_from_iterator(texts, trainer=trainer)
        return cls(backend)

    @classmethod
    def load(cls, directory: Path) -> Tokenizer:
        path = Path(directory) / TOKENIZER_FILE
        if not path.is_file():
            raise TokenizerError(f"no {TOKENIZER_FILE} in {directory}")
        try:
            return cls(HFTokenizer.from_file(str(path)))
        except Exception as err:  # the Rust backend raises a bare Exception on bad JSON
            raise TokenizerError(f"cannot read {path}: {err}") from err

    def save(self, directory: Path) -> Path:
        path = Path(directory) / TOKENIZER_FILE
        tmp = path.with_suffix(".tmp")
        self.backend.save(str(tmp))
        tmp.replace(path)
        return path

    @property
    def vocab_size(self) -> int:
        return int(self.backend.get_vocab_size())

    def encode(self, text: str) -> list[int]:
        return list(self.backend.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        """Decode, dropping special tokens and everything from the first ``<eos>`` on."""
        ids = list(ids)
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return str(self.backend.decode(ids, skip_special_tokens=True)).strip()

    def chat_prompt(self, question: str, history: Sequence[tuple[str, str]] = ()) -> list[int]:
        """Ids of the user turns that follow the image, ending in ``<|assistant|>``.

        ``history`` holds earlier (question, answer) pairs of the same conversation.
        """
        ids: list[int] = []
        for past_question, past_answer in history:
            ids += [self.user_id, *self.encode(past_question), self.assistant_id]
            ids += [*self.encode(past_answer), self.eos_id]
        return [*ids, self.user_id, *self.encode(question), self.assistant_id]

    def response(self, text: str) -> list[int]:
        """Ids the model must produce for ``text``: the answer followed by ``<eos>``."""
        return [*self.encode(text), self.eos_id]


def pad_rows(
    rows: Sequence[list[int]], pad_id: int, left: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ragged id lists into ``(ids, mask)``, padding on the left or the right."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask
