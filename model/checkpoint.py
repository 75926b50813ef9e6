"""Checkpoint directories: safetensors weights, JSON config, tokenizer, metrics.

Layout::

    model.safetensors   every VLM tensor (vision, projector, LM), stored in float16
    config.json         architecture, tokenizer + weights hashes, preprocessing, data hash, stage
    tokenizer.json      the BPE tokenizer
    metrics.json        what the checkpoint reached, written by training and the benchmark
    report_ngrams.safetensors  (optional) the training reports' token n-grams, which one-step
                        decoding writes under (model/report_ngrams.py)
    trust.json          (optional) the statistics of the trust signals, fitted for these weights
                        by ``echocxr fit-trust`` (model/trust_stats.py)

Loading re-hashes the files and checks the format version and every tensor shape, so a truncated
download, a swapped tokenizer or a config edited by hand fails with a ``CheckpointError`` that says
which file is wrong, instead of producing a model that writes nonsense.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dicom.transforms import PREPROCESSING
from model.config import ConfigError, VLMConfig
from model.partial_directory import new_partial_directory
from model.report_ngrams import NGRAMS_FILE, ReportNgrams, ReportNgramsError
from model.tokenizer import TOKENIZER_FILE, Tokenizer, TokenizerError
from model.trust_stats import TrustStatistics, TrustStatisticsError, load_trust_statistics
from model.vlm import VLM

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
STORAGE_DTYPE = torch.float16


class CheckpointError(ValueError):
    """A checkpoint directory is missing, corrupt or does not match the code that loads it."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def code_version() -> str:
    try:
        return metadata.version("echocxr")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass
class LoadedCheckpoint:
    """A model ready for inference with the manifest that describes it."""

    vlm: VLM
    tokenizer: Tokenizer
    manifest: dict[str, Any]
    trust: TrustStatistics | None = None  # None where the checkpoint ships no trust.json

    @property
    def weights_sha256(self) -> str:
        return str(self.manifest["weights"]["sha256"])

    @property
    def model_id(self) -> str:
        return str(self.manifest["model_id"])


def save_checkpoint(
    directory: Path,
    vlm: VLM,
    tokenizer: Tokenizer,
    *,
    model_id: str,
    data_sha256: str,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (temp directory, then rename)."""
    directory = Path(directory)
    tmp = new_partial_directory(directory)
    state = {
        k: v.detach().to("cpu", STORAGE_DTYPE).contiguous() for k, v in vlm.state_dict().items()
    }
    if vlm.lm.config.tie_word_embeddings:  # stored once: safetensors refuses shared tensors
        del state["lm.lm_head.weight"]
    save_file(state, str(tmp / WEIGHTS_FILE))
    tokenizer.save(tmp)
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "code_version": code_version(),
        "torch_version": torch.__version__.split("+")[0],
        "stage": vlm.config.stage,
        "model": vlm.config.to_dict(),
        "tokenizer": {
            "file": TOKENIZER_FILE,
            "sha256": sha256_file(tmp / TOKENIZER_FILE),
            "vocab_size": tokenizer.vocab_size,
        },
        "weights": {
            "file": WEIGHTS_FILE,
            "sha256": sha256_file(tmp / WEIGHTS_FILE),
            "dtype": "float16",
        },
        "image_preprocessing": {"image_size": vlm.config.image_size, "steps": PREPROCESSING},
        "training_data_sha256": data_sha256,
    }
    if vlm.report_ngrams is not None:
        manifest["report_ngrams"] = ngrams_entry(vlm.report_ngrams, tmp)
    (tmp / CONFIG_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (tmp / METRICS_FILE).write_text(json.dumps(metrics or {}, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return directory


def ngrams_entry(ngrams: ReportNgrams, directory: Path) -> dict[str, Any]:
    """Write the n-gram table into ``directory``; its manifest entry."""
    path = ngrams.save(directory)
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "order": ngrams.order,
        "count": len(ngrams.keys),
    }


def add_report_ngrams(directory: Path, ngrams: ReportNgrams) -> None:
    """Give an existing checkpoint its report n-grams (replacing any), manifest last.

    The weights are untouched, so the checkpoint keeps its weights hash; a crash between the two
    writes leaves a manifest whose n-gram hash no longer matches, which loading reports.
    """
    manifest = read_manifest(directory)
    check_vocabulary(ngrams, manifest, directory)
    manifest["report_ngrams"] = ngrams_entry(ngrams, directory)
    path = Path(directory) / CONFIG_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def read_manifest(directory: Path) -> dict[str, Any]:
    """Parse ``config.json`` and check the format version."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    path = directory / CONFIG_FILE
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise CheckpointError(f"{directory} has no {CONFIG_FILE}; is it a checkpoint?") from err
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"{path} is not valid JSON ({err}); the checkpoint is corrupt"
        ) from err
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {manifest.get('format_version')!r}, this code reads "
            f"format {FORMAT_VERSION}; re-export it with the matching echocxr version"
        )
    return manifest


def verify_hash(path: Path, expected: str) -> None:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointError(
            f"{path} does not match the sha256 in {CONFIG_FILE} "
            f"({actual[:12]}... != {expected[:12]}...): the file is corrupt or was replaced"
        )


def load_state(vlm: VLM, path: Path) -> None:
    """Load float16 weights into a float32 model, naming any tensor whose shape differs."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err
    expected = vlm.state_dict()
    if vlm.lm.config.tie_word_embeddings:
        expected.pop("lm.lm_head.weight", None)
    wrong = [
        k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if wrong or missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit the configured architecture: shape mismatch {wrong[:3]}, "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    vlm.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)


def load_checkpoint(directory: Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model of a checkpoint directory after checking its files and shapes."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    try:
        verify_hash(directory / TOKENIZER_FILE, manifest["tokenizer"]["sha256"])
        verify_hash(directory / WEIGHTS_FILE, manifest["weights"]["sha256"])
        tokenizer = Tokenizer.load(directory)
        config = VLMConfig.from_dict(manifest["model"])
    except KeyError as err:
        raise CheckpointError(f"{directory / CONFIG_FILE} lacks the field {err}") from err
    except (TokenizerError, ConfigError) as err:
        raise CheckpointError(f"{directory}: {err}") from err
    vlm = VLM(config, tokenizer)
    load_state(vlm, directory / WEIGHTS_FILE)
    vlm.report_ngrams = load_report_ngrams(directory, manifest)
    try:
        trust = load_trust_statistics(directory, manifest["weights"]["sha256"])
    except TrustStatisticsError as err:
        raise CheckpointError(str(err)) from err
    return LoadedCheckpoint(
        vlm=vlm.to(device).eval(), tokenizer=tokenizer, manifest=manifest, trust=trust
    )


def load_report_ngrams(directory: Path, manifest: dict[str, Any]) -> ReportNgrams | None:
    """The checkpoint's report n-grams, checked against its manifest, or None if it has none."""
    entry = manifest.get("report_ngrams")
    if entry is None:
        return None
    path = Path(directory) / NGRAMS_FILE
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise CheckpointError(f"{directory / CONFIG_FILE}: report_ngrams lacks its sha256")
    verify_hash(path, entry["sha256"])
    try:
        ngrams = ReportNgrams.load(path)
    except ReportNgramsError as err:
        raise CheckpointError(str(err)) from err
    check_vocabulary(ngrams, manifest, directory)
    return ngrams


def check_vocabulary(ngrams: ReportNgrams, manifest: dict[str, Any], directory: Path) -> None:
    """Refuse n-grams of another vocabulary than the checkpoint's tokenizer."""
    if ngrams.vocab_size != manifest["tokenizer"]["vocab_size"]:
        raise CheckpointError(
            f"the n-grams are of a {ngrams.vocab_size}-token vocabulary, {directory} has "
            f"{manifest['tokenizer']['vocab_size']}"
        )


def write_metrics(directory: Path, metrics: dict[str, Any]) -> None:
    """Merge ``metrics`` into ``metrics.json`` (benchmarks add to what training wrote)."""
    path = Path(directory) / METRICS_FILE
    current = json.loads(path.read_text()) if path.is_file() else {}
    current.update(metrics)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
