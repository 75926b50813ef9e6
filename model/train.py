"""Stage-1 training: next-token SFT on (image, prompt) -> report, plus visual Q&A turns.

Loss on response tokens only. Each image is embedded once per step and shared by its report row
and its Q&A rows. The run is seeded and resumable: a snapshot (model, optimizer, schedule, position
in the epoch) is written atomically every ``eval_every`` steps, the sample order and the Q&A choice
depend only on (seed, epoch, index), so an interrupted run resumed from its snapshot ends with the
same weights as an uninterrupted one. Multi-GPU runs go through ``torchrun`` (DDP +
``DistributedSampler``); only rank 0 writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from clinical_eval.observations import OBSERVATIONS
from model.checkpoint import save_checkpoint
from model.config import TrainConfig
from model.data.datasets import RECORDS_FILE, StudyDataset, StudyRecord, phantom_cache
from model.data.qa import REPORT_PROMPT, QAPair
from model.tokenizer import Tokenizer, pad_rows
from model.vlm import VLM

log = logging.getLogger(__name__)
STATE_FILE = "train_state.pt"


@dataclass
class Rows:
    """Rows of (image, prompt, response) of similar response length; rows may share an image."""

    image_index: torch.Tensor  # (R,) which image of the batch each row reads
    prompt_ids: torch.Tensor  # (R, Lp) left-padded
    prompt_mask: torch.Tensor  # (R, Lp)
    response_ids: torch.Tensor  # (R, Lr) right-padded, ends in <eos>
    response_mask: torch.Tensor  # (R, Lr)

    @classmethod
    def build(
        cls,
        image_index: list[int],
        prompts: list[list[int]],
        responses: list[list[int]],
        pad_id: int,
    ) -> Rows:
        prompt_ids, prompt_mask = pad_rows(prompts, pad_id, left=True)
        response_ids, response_mask = pad_rows(responses, pad_id, left=False)
        return cls(torch.tensor(image_index), prompt_ids, prompt_mask, response_ids, response_mask)

    def to(self, device: torch.device) -> Rows:
        return Rows(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


@dataclass
class Batch:
    """Images plus row groups: report rows and Q&A rows are padded separately.

    A Q&A answer is a few tokens while a report is about a hundred; padding both to the report
    length made a third of every step's tokens padding (measured: ~27% of step time).
    """

    pixels: torch.Tensor  # (B, 1, S, S)
    groups: list[Rows]
    labels: torch.Tensor  # (B, 14) targets of the finding head: 1, 0.5 uncertain, 0
    # (B, 14) finding probabilities given to the finding tokens instead of the head's; NaN rows
    # use the head (see TrainConfig.finding_forcing). None: the head everywhere.
    known_findings: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        known = None if self.known_findings is None else self.known_findings.to(device)
        return Batch(
            self.pixels.to(device),
            [rows.to(device) for rows in self.groups],
            self.labels.to(device),
            known,
        )

    def with_known_findings(self, rows: torch.Tensor) -> Batch:
        """The batch with the ground-truth labels fed to the finding tokens of ``rows`` (B,)."""
        nan = torch.full_like(self.labels, float("nan"))
        known = torch.where(rows.unsqueeze(1), self.labels, nan)
        return Batch(self.pixels, self.groups, self.labels, known)


def label_targets(labels: dict[str, int | None]) -> list[float]:
    """CheXpert labels as soft targets in OBSERVATIONS order; blank counts as negative."""
    return [{1: 1.0, -1: 0.5}.get(labels.get(name) or 0, 0.0) for name in OBSERVATIONS]


def collate(items: list[dict[str, Any]], tokenizer: Tokenizer, max_response: int) -> Batch:
    """One report row per study, and one row per picked Q&A turn in a second group."""
    report_prompt = tokenizer.chat_prompt(REPORT_PROMPT)
    reports = [tokenizer.response(item["record"].report_text)[:max_response] for item in items]
    groups = [
        Rows.build(list(range(len(items))), [report_prompt] * len(items), reports, tokenizer.pad_id)
    ]
    qa: list[tuple[int, QAPair]] = [
        (i, pair) for i, item in enumerate(items) for pair in item["qa"]
    ]
    if qa:
        prompts = [tokenizer.chat_prompt(pair.question) for _, pair in qa]
        answers = [tokenizer.response(pair.answer) for _, pair in qa]
        groups.append(Rows.build([i for i, _ in qa], prompts, answers, tokenizer.pad_id))
    targets = torch.tensor([label_targets(item["record"].labels) for item in items])
    return Batch(torch.stack([item["pixels"] for item in items]), groups, targets)


def length_sorted_batches(
    pool: Sequence[int], records: Sequence[StudyRecord], tokenizer: Tokenizer, batch_size: int
) -> list[list[int]]:
    """``pool`` (study indices) cut into batches of similar report length, shortest first.

    Every row is padded to the longest report of its batch. Over uniformly drawn batches of 16,
    ~46% of the response tokens of a stages 2-3 step were padding; sorting a pool of 8 batches
    before cutting it leaves ~7% (``benchmarks/results/length_buckets.md``).
    """
    lengths = [len(tokenizer.response(records[i].report_text)) for i in pool]
    ordered = [pool[j] for j in sorted(range(len(pool)), key=lengths.__getitem__)]
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def mean_report_tokens(records: Sequence[StudyRecord], tokenizer: Tokenizer) -> float:
    """Mean response length in tokens: what a length-bucketed batch's loss divides by per row.

    A batch's own token count would not do once batches are sorted by length: a batch of short
    reports would give each of its tokens more weight than a batch of long ones, and a model
    trained so writes shorter reports (the first bucketed RAD chain wrote 48 tokens per report
    where the uniform one wrote 56; with this constant its student's length came back, its
    teacher's did not; ``benchmarks/results/stages_2_3_time.md``).
    """
    return sum(len(tokenizer.response(r.report_text)) for r in records) / max(len(records), 1)


def rows_loss(vlm: VLM, visual: torch.Tensor, rows: Rows) -> torch.Tensor:
    """Mean cross-entropy over the response tokens of one row group."""
    context, context_mask = vlm.assemble_context(
        visual[rows.image_index], rows.prompt_ids, rows.prompt_mask
    )
    inputs = torch.cat([context, vlm.embed_tokens(rows.response_ids)], 1)  # (R, Lc+Lr, D)
    mask = torch.cat([context_mask, rows.response_mask], 1)
    Lr = rows.response_ids.shape[1]
    # the last context position predicts response[0]; response[-1] predicts nothing
    logits = vlm.lm(inputs_embeds=inputs, attention_mask=mask, logits_to_keep=Lr + 1).logits[:, :-1]
    targets = rows.response_ids.masked_fill(rows.response_mask == 0, -100)
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)


def response_loss(vlm: VLM, batch: Batch, visual: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over groups of the per-token loss: short Q&A answers weigh as much as reports.

    Context and padding carry no loss. Each image is embedded once for all its rows.
    """
    if visual is None:
        visual = vlm.embed_images(batch.pixels)  # (B, Nv, D)
    return torch.stack([rows_loss(vlm, visual, rows) for rows in batch.groups]).mean()


class ResponseLoss(torch.nn.Module):
    """The training objective as one module, so DDP's gradient hooks see one forward per step.

    Report and Q&A token loss, plus ``label_loss_weight`` x the multi-label loss of the finding
    tokens' head against the study's labels (see ``TrainConfig.label_loss_weight``).
    """

    def __init__(self, vlm: VLM, label_loss_weight: float = 0.0) -> None:
        super().__init__()
        self.vlm = vlm
        self.label_loss_weight = label_loss_weight

    def forward(self, batch: Batch) -> torch.Tensor:
        visual, finding_logits = self.vlm.embed_images_with_findings(
            batch.pixels, batch.known_findings
        )
        loss = response_loss(self.vlm, batch, visual)
        if self.label_loss_weight and finding_logits is not None:
            label_loss = F.binary_cross_entropy_with_logits(finding_logits.float(), batch.labels)
            loss = loss + self.label_loss_weight * label_loss
        return loss


def train_tokenizer(records: Sequence[StudyRecord], vocab_size: int) -> Tokenizer:
    """BPE over reports, prompts and Q&A texts of the training split only."""

    def texts() -> Any:
        yield REPORT_PROMPT
        for record in records:
            yield record.report_text
            for qa in record.qa:
                yield qa.question
                yield qa.answer

    return Tokenizer.train(texts(), vocab_size=vocab_size)


def make_optimizer(vlm: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW, weight decay on matrices only (nanoGPT): norms, biases, positions are exempt."""
    decay = [p for p in vlm.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in vlm.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": other, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))


def clipped_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, parameters: Iterable[torch.Tensor]
) -> None:
    """Backpropagate ``loss`` and step, with the gradient norm of ``parameters`` clipped at 1
    (every stage trains with the same clip)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()


def lr_at(step: int, total: int, peak: float, warmup_steps: int) -> float:
    """Linear warm-up to ``peak`` then cosine decay to 10% of it (every stage's schedule)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total - warmup_steps)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@dataclass
class Distributed:
    """Rank information; a single process is rank 0 of 1."""

    rank: int = 0
    world: int = 1

    @classmethod
    def init(cls) -> Distributed:
        """Join the process group that ``torchrun`` describes in the environment, if any."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        return cls(rank=dist.get_rank(), world=world)

    @property
    def main(self) -> bool:
        return self.rank == 0


def data_hash(directories: Sequence[Path]) -> str:
    """Hash of the training and validation records: which data a checkpoint saw."""
    digest = hashlib.sha256()
    for directory in directories:
        digest.update((Path(directory) / RECORDS_FILE).read_bytes())
    return digest.hexdigest()


@torch.no_grad()
def validation_loss(
    vlm: VLM, dataset: StudyDataset, tokenizer: Tokenizer, config: TrainConfig, device: torch.device
) -> float:
    vlm.eval()
    losses = []
    for start in range(0, len(dataset), config.batch_size):
        items = [dataset[i] for i in range(start, min(len(dataset), start + config.batch_size))]
        batch = collate(items, tokenizer, config.model.max_response_tokens).to(device)
        losses.append(response_loss(vlm, batch).item())
    vlm.train()
    return sum(losses) / len(losses)


def save_state(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


class Trainer:
    """Owns the model, optimizer and data of one run; ``fit`` runs or resumes it."""

    def __init__(
        self, config: TrainConfig, out: Path, seed: int, caches: tuple[Path, Path]
    ) -> None:
        self.config, self.out, self.seed = config, Path(out), seed
        self.ranks = Distributed.init()
        self.device = torch.device(
            f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
        )
        self.caches = caches
        self.train_set = StudyDataset(self.caches[0], config.qa_per_study, seed)
        self.val_set = StudyDataset(self.caches[1], qa_per_study=1, seed=seed)
        self.out.mkdir(parents=True, exist_ok=True)
        self.tokenizer = self.load_or_train_tokenizer()
        torch.manual_seed(seed)
        self.vlm = VLM(config.model, self.tokenizer).to(self.device)
        self.objective = ResponseLoss(self.vlm, config.label_loss_weight).to(self.device)
        self.optimizer = make_optimizer(self.objective, config.lr, config.weight_decay)
        self.steps_per_epoch = len(self.train_set) // (config.batch_size * self.ranks.world)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.step, self.history = 0, []  # type: ignore[var-annotated]

    def load_or_train_tokenizer(self) -> Tokenizer:
        """Reuse the run's tokenizer when resuming, so ids stay those the weights learned."""
        if (self.out / "tokenizer.json").is_file():
            return Tokenizer.load(self.out)
        tokenizer = train_tokenizer(self.train_set.records, self.config.vocab_size)
        if self.ranks.main:
            tokenizer.save(self.out)
        return tokenizer

    def resume(self) -> None:
        path = self.out / STATE_FILE
        if not path.is_file():
            return
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.objective.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.history = state["step"], state["history"]
        log.info("resumed from step %d", self.step)

    def snapshot(self) -> None:
        if self.ranks.main:
            payload = {
                "model": self.objective.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "step": self.step,
                "history": self.history,
            }
            save_state(self.out / STATE_FILE, payload)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The index lists of one epoch for this rank, identical on every (re)run."""
        sampler: DistributedSampler[int] = DistributedSampler(
            self.train_set,
            num_replicas=self.ranks.world,
            rank=self.ranks.rank,
            shuffle=True,
            seed=self.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        order = list(sampler)
        size = self.config.batch_size
        return [order[i : i + size] for i in range(0, self.steps_per_epoch * size, size)]

    def train_step(self, model: torch.nn.Module, indices: list[int]) -> float:
        items = [self.train_set[i] for i in indices]
        batch = collate(items, self.tokenizer, self.config.model.max_response_tokens)
        if self.config.finding_forcing:
            # which studies get their true findings depends on (seed, step) only: resumable
            draw = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step)
            forced = torch.rand(len(items), generator=draw) < self.config.finding_forcing
            batch = batch.with_known_findings(forced)
        batch = batch.to(self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(
                self.step, self.total_steps, self.config.lr, self.config.warmup_steps
            )
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            loss = model(batch)
        clipped_step(loss, self.optimizer, self.objective.parameters())
        self.step += 1
        return float(loss.item())

    def validate(self, train_loss: float) -> None:
        record = {
            "step": self.step,
            "train_loss": round(train_loss, 4),
            "val_loss": round(
                validation_loss(self.vlm, self.val_set, self.tokenizer, self.config, self.device), 4
            ),
            "time": time.time(),
        }
        self.history.append(record)
        log.info("step %d train %.4f val %.4f", self.step, record["train_loss"], record["val_loss"])
        self.snapshot()

    def fit(self, stop_after: int | None = None) -> Path | None:
        """Train to the end (or ``stop_after`` steps, to simulate a kill) and export on rank 0."""
        self.resume()
        model: torch.nn.Module = self.objective
        if self.ranks.world > 1:
            model = DistributedDataParallel(model)
        self.vlm.train()
        bar = tqdm(
            total=self.total_steps, initial=self.step, disable=not self.ranks.main, desc="train"
        )
        running = float("nan")
        while self.step < self.total_steps:
            epoch, position = divmod(self.step, self.steps_per_epoch)
            self.train_set.set_epoch(epoch)
            loss = self.train_step(model, self.epoch_batches(epoch)[position])
            running = loss if math.isnan(running) else 0.9 * running + 0.1 * loss
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}")
            if self.step % self.config.eval_every == 0 or self.step == self.total_steps:
                self.validate(running)
            if stop_after is not None and self.step >= stop_after:
                return None
        bar.close()
        return self.export() if self.ranks.main else None

    def export(self) -> Path:
        metrics = {
            "history": self.history,
            "train_config": self.config.to_dict(),
            "seed": self.seed,
        }
        return save_checkpoint(
            self.out / "checkpoint",
            self.vlm.cpu(),
            self.tokenizer,
            model_id=f"echocxr-{self.config.model.stage}-{self.out.name}",
            data_sha256=data_hash(self.caches),
            metrics=metrics,
        )


def run(
    config_path: Path, out: Path, seed: int, cache_root: Path, stop_after: int | None = None
) -> Path | None:
    """Entry point of ``echocxr train`` (stage 1); returns the exported checkpoint directory."""
    config = TrainConfig.from_file(config_path)
    size, data_seed = config.model.image_size, config.phantom_seed
    caches = (
        Path(config.train_dir)
        if config.train_dir
        else phantom_cache(cache_root, data_seed, config.train_studies, "train", size),
        Path(config.val_dir)
        if config.val_dir
        else phantom_cache(cache_root, data_seed, config.val_studies, "val", size),
    )
    trainer = Trainer(config, out, seed, caches)
    (trainer.out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2))
    return trainer.fit(stop_after=stop_after)
