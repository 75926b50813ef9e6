"""The token n-grams of the training reports, and one-step block decoding under them.

One forward of the one-step engine predicts a block's positions independently. Where the teacher
hesitated between two phrasings or two places for a word, the per-position argmax mixes them:
"Left pleural effusion effusion.", "The mediastinum contours are widened." Each of those holds a
token n-gram that no training report holds. :class:`ReportNgrams` is the set of n-grams the
training reports do hold (a few thousand for the phantom's trigrams), stored with the checkpoint;
:func:`lattice_decode` writes, from each position's ``candidates`` most likely tokens, the block
with the highest summed log-probability once every n-gram outside the set costs ``penalty``. It
is Viterbi decoding over the candidate lattice, so it adds no forward: the block is still written
by one pass of the network, and where the argmax already reads as a training report would, it is
kept. Measured in ``benchmarks/results/report_ngrams.md``.

Every report is read, and decoded, after ``order - 1`` copies of ``<bos>``, so the table also
says how reports begin; an n-gram that reaches past an ``<eos>`` (what follows is cut) is not
checked.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

if TYPE_CHECKING:
    from model.tokenizer import Tokenizer

NGRAMS_FILE = "report_ngrams.safetensors"
# Trigrams: on 500 test studies bigrams and trigrams gave the same macro-F1, but under bigrams
# a report could cycle through allowed pairs ("... effusion. Left pleural effusion. Left ...")
# and the repetition guard ended 1.2% of reports, under trigrams 0.2%, as without the prior.
ORDER = 3


class ReportNgramsError(ValueError):
    """An n-gram table that cannot be built, read or used with this model."""


@dataclass(frozen=True)
class ReportNgrams:
    """The distinct token n-grams of ``order`` in a set of reports, as sorted integer keys."""

    order: int
    vocab_size: int
    start_id: int  # the token a report is read after, order - 1 times (``<bos>``)
    keys: torch.Tensor  # (M,) int64, sorted: sum of token_j * vocab_size ** (order - 1 - j)

    @classmethod
    def from_reports(
        cls, reports: Iterable[Sequence[int]], order: int, vocab_size: int, start_id: int
    ) -> ReportNgrams:
        """The table of ``reports`` (token ids, each ending with its ``<eos>``)."""
        if order < 2 or vocab_size**order >= 2**63:
            raise ReportNgramsError(f"order must be >= 2 and fit int64 keys, got {order}")
        start = [start_id] * (order - 1)
        rows = [torch.tensor([*start, *ids]) for ids in reports]
        windows = [row.unfold(0, order, 1) for row in rows if len(row) >= order]
        if not windows:
            raise ReportNgramsError("no report to read n-grams from")
        keys = ngram_keys(torch.cat(windows), vocab_size).unique()
        return cls(order, vocab_size, start_id, keys)

    @classmethod
    def of_texts(
        cls, texts: Iterable[str], tokenizer: Tokenizer, order: int = ORDER
    ) -> ReportNgrams:
        """The table of report texts as the model writes them (each followed by ``<eos>``)."""
        reports = (tokenizer.response(text) for text in texts)
        return cls.from_reports(reports, order, tokenizer.vocab_size, tokenizer.bos_id)

    def __contains__(self, ngram: Sequence[int]) -> bool:
        return bool(self.seen(torch.tensor(ngram), eos_id=-1))

    def seen(self, grams: torch.Tensor, eos_id: int) -> torch.Tensor:
        """Which n-grams of ``grams`` (..., order) pass: (...,) bool.

        Those in the table pass, and those with an ``<eos>`` before their last token.
        """
        keys = ngram_keys(grams, self.vocab_size)
        at = torch.searchsorted(self.keys, keys).clamp(max=len(self.keys) - 1)
        after_eos = (grams[..., :-1] == eos_id).any(-1)
        return (self.keys[at] == keys) | after_eos

    def to(self, device: torch.device) -> ReportNgrams:
        """The table on ``device``: n-grams are looked up where the logits are, and a model
        moved to a GPU leaves this table, not a registered buffer, behind."""
        if self.keys.device == device:
            return self
        return replace(self, keys=self.keys.to(device))

    def start(self, rows: int, device: torch.device) -> torch.Tensor:
        """The history before a report: (rows, order - 1) ``start_id``."""
        return torch.full((rows, self.order - 1), self.start_id, device=device)

    def save(self, directory: Path) -> Path:
        path = Path(directory) / NGRAMS_FILE
        header = torch.tensor([self.order, self.vocab_size, self.start_id])
        save_file({"keys": self.keys.contiguous(), "order_vocab_start": header}, str(path))
        return path

    @classmethod
    def load(cls, path: Path) -> ReportNgrams:
        try:
            tensors = load_file(str(path))
            order, vocab_size, start_id = (int(v) for v in tensors["order_vocab_start"])
            return cls(order, vocab_size, start_id, tensors["keys"].long())
        except (OSError, KeyError, ValueError, SafetensorError) as err:
            raise ReportNgramsError(f"cannot read the report n-grams {path}: {err}") from err


@dataclass(frozen=True)
class NgramPrior:
    """How the one-step engine writes a block under ``ngrams``: :func:`lattice_decode`."""

    ngrams: ReportNgrams
    eos_id: int
    candidates: int
    penalty: float

    def __call__(self, logits: torch.Tensor, written: Sequence[torch.Tensor]) -> torch.Tensor:
        """The next block's ids (R, W) from its ``logits`` after the ``written`` blocks."""
        start = self.ngrams.start(logits.shape[0], logits.device)
        last = written[1 - self.ngrams.order :]  # every block holds a token at least
        history = torch.cat([start, *last], 1)[:, 1 - self.ngrams.order :]
        return lattice_decode(
            logits,
            history,
            self.ngrams,
            eos_id=self.eos_id,
            candidates=self.candidates,
            penalty=self.penalty,
        )


def ngram_keys(grams: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """One int64 key per n-gram of ``grams`` (..., n), tokens oldest first: (...,)."""
    key = torch.zeros(grams.shape[:-1], dtype=torch.long, device=grams.device)
    for j in range(grams.shape[-1]):
        key = key * vocab_size + grams[..., j]
    return key


def lattice_decode(
    logits: torch.Tensor,
    history: torch.Tensor,
    ngrams: ReportNgrams,
    *,
    eos_id: int,
    candidates: int,
    penalty: float,
) -> torch.Tensor:
    """The ids ``(R, W)`` of one block under the n-gram prior (module docstring).

    ``logits`` (R, W, V) are the block's positions; ``history`` (R, order - 1) the tokens before
    it, oldest first (:meth:`ReportNgrams.start` before the first). The lattice is the history (one
    reachable candidate each) followed by the block (``candidates`` = K each); a state is the
    candidate index of the last ``order - 1`` positions, read as one base-K number. A row whose
    argmax passes keeps it (no path scores higher); only the others run the dynamic programme.
    """
    best = logits.argmax(-1)  # (R, W)
    n = ngrams.order
    passes = ngrams.seen(torch.cat([history, best], 1).unfold(1, n, 1), eos_id).all(1)  # (R,)
    if not bool(passes.all()):
        fails = ~passes
        best[fails] = viterbi(logits[fails], history[fails], ngrams, eos_id, candidates, penalty)
    return best


def viterbi(
    logits: torch.Tensor,
    history: torch.Tensor,
    ngrams: ReportNgrams,
    eos_id: int,
    candidates: int,
    penalty: float,
) -> torch.Tensor:
    """:func:`lattice_decode`'s dynamic programme over the candidate lattice: ids (R, W)."""
    R, W, _ = logits.shape
    n, K = ngrams.order, min(candidates, logits.shape[-1])
    score, ids = logits.float().log_softmax(-1).topk(K, -1)  # (R, W, K)
    lattice = torch.cat([history[..., None].expand(R, n - 1, K), ids], 1)  # (R, n-1+W, K)
    windows = lattice.unfold(1, n, 1).transpose(2, 3)  # (R, W, n, K): the n-gram ending at each
    digits = candidate_combinations(K, n, logits.device)  # (K^n, n)
    grams = windows[:, :, torch.arange(n, device=logits.device), digits]  # (R, W, K^n, n)
    seen = ngrams.seen(grams, eos_id)  # (R, W, K^n)
    step = score[:, :, digits[:, -1]] - penalty * (~seen).float()  # (R, W, K^n)
    dp = torch.full((R, K ** (n - 1)), float("-inf"), device=logits.device)
    dp[:, 0] = 0.0  # the history: candidate 0 everywhere
    back = []
    for position in range(W):
        total = dp.repeat_interleave(K, 1) + step[:, position]  # (R, K^n), oldest digit first
        dp, oldest = total.view(R, K, K ** (n - 1)).max(1)
        back.append(oldest)
    state = dp.argmax(1)  # (R,)
    picks = []
    for oldest in reversed(back):
        picks.append(state % K)
        state = oldest.gather(1, state[:, None])[:, 0] * K ** (n - 2) + state // K
    chosen = torch.stack(picks[::-1], 1)  # (R, W)
    return ids.gather(2, chosen[..., None])[..., 0]


@functools.cache
def candidate_combinations(candidates: int, order: int, device: torch.device) -> torch.Tensor:
    """(K^n, n): every choice of one candidate index per position of an n-gram, base-K order."""
    axes = [torch.arange(candidates, device=device)] * order
    return torch.cartesian_prod(*axes).reshape(candidates**order, order)
