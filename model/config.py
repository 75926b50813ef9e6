"""Configuration of the EchoCXR vision-language model, one dataclass per part.

The configs travel inside every checkpoint (``config.json``) so a checkpoint rebuilds the exact
network that wrote it (nanoGPT's ``model_args``, transformers' ``config.json``). The language model
is described by a transformers ``LlamaConfig`` so that 4-D attention masks, KV caches and
``save_pretrained``/``from_pretrained`` behave as the ecosystem expects; the diffusion stages
rely on that.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from transformers import LlamaConfig

from clinical_eval.observations import OBSERVATIONS

Stage = Literal["ar", "rad", "dcd"]
STAGES: tuple[str, ...] = ("ar", "rad", "dcd")


class ConfigError(ValueError):
    """A configuration is inconsistent or cannot be read; the message names the field."""


@dataclass
class VisionConfig:
    """A small CNN vision encoder, or a local pretrained vision tower.

    A CNN is the CPU trade-off for the tiny model: at 128-256 px grayscale, five strided
    convolution stages cost a few hundred MFLOPs per image (a ViT-Tiny at 224 px costs ~1.3 GFLOPs)
    and bring locality priors that a few thousand phantom studies cannot teach a ViT.

    Parameters
    ----------
    channels : tuple of int
        Output channels of each stride-2 stage; the last one is the visual token width.
    grid : int
        Side of the token grid after adaptive pooling; ``grid**2`` visual tokens (4 -> 16).
    pretrained_dir : str or None
        A local directory with a transformers vision model (e.g. SigLIP, RAD-DINO) to use instead
        of the CNN. Never fetched from a hub.
    finding_tokens : bool
        Append one visual token per CheXpert observation, weighted by the probability a linear
        head reads off the pooled image features (diagnosis-driven prompting, as in PromptMRG,
        Jin et al. 2024). The language model then reads "effusion: likely" from one token instead
        of learning to find it in the grid, which a small model on a CPU budget did not manage:
        without them the tiny model wrote one of ~12 stock reports after 500 steps.
    """

    channels: tuple[int, ...] = (32, 64, 128, 256)
    grid: int = 4
    pretrained_dir: str | None = None
    finding_tokens: bool = True

    @property
    def out_dim(self) -> int:
        return self.channels[-1]

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid


@dataclass
class ProjectorConfig:
    """The 2-layer MLP between vision features and the LM's embedding space (LLaVA-1.5)."""

    hidden_dim: int = 512


def tiny_text_config(vocab_size: int = 1024) -> dict[str, Any]:
    """Return the ``LlamaConfig`` keywords of the tiny CPU language model.

    Four layers of width 256 keep a 200-token forward at ~2 GFLOPs while still fitting the
    phantom report grammar; embeddings are tied because they are a large share of so small a model.
    """
    return {
        "vocab_size": vocab_size,
        "hidden_size": 256,
        "intermediate_size": 1024,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 512,
        "tie_word_embeddings": True,
        "rms_norm_eps": 1e-5,
    }


@dataclass
class TextConfig:
    """The causal language model: a ``LlamaConfig`` built from keywords, or a local directory.

    Parameters
    ----------
    llama : dict
        Keywords of ``transformers.LlamaConfig``; ``vocab_size`` and the special token ids are set
        from the tokenizer when the model is built.
    pretrained_dir : str or None
        A local directory holding a transformers causal LM (``config.json`` + weights).
    """

    llama: dict[str, Any] = field(default_factory=tiny_text_config)
    pretrained_dir: str | None = None

    def to_llama(self) -> LlamaConfig:
        return LlamaConfig(**self.llama)

    @property
    def hidden_size(self) -> int:
        return int(self.llama["hidden_size"])


@dataclass
class VLMConfig:
    """Everything needed to rebuild the network: parts, image size and the training stage.

    Parameters
    ----------
    image_size : int
        Side of the square grayscale input in pixels.
    stage : {"ar", "rad", "dcd"}
        Which training stage produced the weights; engines use it to pick their default.
    block_size : int or None
        Diffusion block size B (None for the AR stage).
    max_response_tokens : int
        Generation cap and training truncation length for responses.
    """

    vision: VisionConfig = field(default_factory=VisionConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    text: TextConfig = field(default_factory=TextConfig)
    image_size: int = 128
    stage: str = "ar"
    block_size: int | None = None
    max_response_tokens: int = 192

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.stage == "ar" and self.block_size is not None:
            raise ConfigError("block_size must be None for the 'ar' stage")
        if self.stage != "ar" and (self.block_size is None or self.block_size < 1):
            raise ConfigError(f"stage {self.stage!r} needs a positive block_size")
        if self.image_size < 32 or self.image_size % self.vision.grid:
            raise ConfigError(
                f"image_size {self.image_size} must be >= 32 and a multiple of grid "
                f"{self.vision.grid}"
            )

    @property
    def num_visual_tokens(self) -> int:
        return self.vision.num_tokens + (len(OBSERVATIONS) if self.vision.finding_tokens else 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VLMConfig:
        """Rebuild from ``to_dict`` output, rejecting unknown keys so typos fail loudly."""
        try:
            vision = dict(data.get("vision", {}))
            if "channels" in vision:
                vision["channels"] = tuple(vision["channels"])
            rest = {k: v for k, v in data.items() if k not in ("vision", "projector", "text")}
            return cls(
                vision=VisionConfig(**vision),
                projector=ProjectorConfig(**data.get("projector", {})),
                text=TextConfig(**data.get("text", {})),
                **rest,
            )
        except TypeError as err:
            raise ConfigError(f"invalid model config: {err}") from err

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> VLMConfig:
        return cls.from_dict(json.loads(text))


@dataclass
class TrainConfig:
    """A training recipe; the JSON file under ``model/configs/`` that rebuilds a checkpoint.

    Parameters
    ----------
    model : VLMConfig
        The network to train (from scratch, or from ``init_checkpoint``).
    train_studies, val_studies : int
        Phantom studies drawn from the train and val splits.
    phantom_seed : int
        Seed of the phantom generator (data), distinct from the training seed (order, init).
    epochs, batch_size, lr, weight_decay, warmup_steps : training schedule (AdamW, cosine decay).
    qa_per_study : int
        Visual Q&A turns added per study and epoch, so the same model is the assistant.
    vocab_size : int
        Size of the BPE vocabulary trained on the training reports.
    eval_every : int
        Optimizer steps between validations (and resumable snapshots).
    label_loss_weight : float
        Weight of the multi-label loss on the finding tokens' head (needs
        ``model.vision.finding_tokens``). The report loss reaches the vision encoder only through
        a few finding words among ~100 tokens; this direct signal makes the small CNN learn the
        image in a CPU-sized budget. 0 turns it off.
    finding_forcing : float
        Share of training studies whose finding tokens get the true labels instead of the head's
        guess (teacher forcing). Early in training the head's guesses are noise and the language
        model learns to ignore those tokens (measured: after 250 steps the loss with shuffled
        images was within 4% of the true one); with true labels it learns what they mean at
        once, and the rest of the studies teach it to read the head's soft guesses.
        Inference always uses the head: the image is the only input.
    train_dir, val_dir : str or None
        Render caches to train from instead of the phantom (e.g. written by
        ``model.data.public.build_cache`` from MIMIC-CXR-JPG, IU X-ray or CheXpert Plus).
    """

    model: VLMConfig = field(default_factory=VLMConfig)
    train_studies: int = 6000
    val_studies: int = 96
    phantom_seed: int = 0
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1.5e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    qa_per_study: int = 1
    vocab_size: int = 1024
    eval_every: int = 250
    label_loss_weight: float = 1.0
    finding_forcing: float = 0.5
    train_dir: str | None = None
    val_dir: str | None = None

    def __post_init__(self) -> None:
        if (
            self.label_loss_weight or self.finding_forcing
        ) and not self.model.vision.finding_tokens:
            raise ConfigError(
                "label_loss_weight and finding_forcing act on the finding tokens: set "
                '"finding_tokens": true under model.vision, or both to 0'
            )

    @classmethod
    def from_file(cls, path: Path) -> TrainConfig:
        """Read a recipe file; a missing file or unknown key is a ``ConfigError``."""
        if not path.is_file():
            raise ConfigError(f"training config {path} does not exist")
        try:
            data = json.loads(path.read_text())
            model = VLMConfig.from_dict(data.pop("model", {}))
            return cls(model=model, **data)
        except (json.JSONDecodeError, TypeError) as err:
            raise ConfigError(f"invalid training config {path}: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
