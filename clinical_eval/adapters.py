"""Adapters for metrics that need model weights: loaded only from a local directory, never fetched.

Configure a root directory (argument, or env ``ECHOCXR_METRIC_WEIGHTS``) holding one folder per
metric: ``chexbert/``, ``radgraph/``, ``ratescore/``, ``green/``, ``bertscore/``. A metric whose
folder, files or package is missing is reported as ``{"available": False, "reason": ...}``; it is
never replaced by another metric, because a number under the wrong name is worse than none.

Only BERTScore runs in this build (greedy cosine matching of contextual token embeddings, Zhang
et al. 2020, no IDF weighting, no baseline rescaling; the variant travels with the numbers). The
other adapters check their prerequisites and say precisely what is missing; running them is
future work, and they say so rather than pretending.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinical_eval.language import check_pairs

WEIGHTS_ENV = "ECHOCXR_METRIC_WEIGHTS"


@dataclass(frozen=True)
class AdapterSpec:
    """What a weight-needing metric requires before it can run."""

    name: str
    folder: str
    required_files: tuple[str, ...]
    package: str | None
    runnable: bool


ADAPTERS: dict[str, AdapterSpec] = {
    "chexbert": AdapterSpec(
        "CheXbert F1 and SembScore", "chexbert", ("chexbert.pth",), "f1chexbert", False
    ),
    "radgraph": AdapterSpec(
        "RadGraph F1 (simple/partial/complete)", "radgraph", ("model.tar.gz",), "radgraph", False
    ),
    "ratescore": AdapterSpec(
        "RaTEScore", "ratescore", ("ner/config.json", "biolord/config.json"), "RaTEScore", False
    ),
    "green": AdapterSpec("GREEN", "green", ("config.json",), "green_score", False),
    "bertscore": AdapterSpec("BERTScore", "bertscore", ("config.json",), None, True),
}


def weights_root(configured: Path | None = None) -> Path | None:
    """The configured weights root, from the argument or ``ECHOCXR_METRIC_WEIGHTS``."""
    if configured is not None:
        return configured
    from_env = os.environ.get(WEIGHTS_ENV)
    return Path(from_env) if from_env else None


def unavailable_reason(spec: AdapterSpec, root: Path | None) -> str | None:
    """Why the metric cannot run, or None when it can."""
    if root is None:
        return f"no weights directory configured: set {WEIGHTS_ENV} or pass weights_dir"
    folder = root / spec.folder
    missing = [f for f in spec.required_files if not (folder / f).is_file()]
    if missing:
        return f"{folder} lacks {missing}: place the {spec.name} weights there"
    if spec.package and importlib.util.find_spec(spec.package) is None:
        return f"Python package {spec.package!r} is not installed"
    if not spec.runnable:
        return f"{spec.name} weights found, but its runner is not implemented in this build"
    return None


def _bertscore(model_dir: Path, generated: Sequence[str], reference: Sequence[str]) -> dict:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()

    def embed(text: str) -> Any:
        encoded = tokenizer(text, return_tensors="pt", truncation=True)
        with torch.no_grad():
            hidden = model(**encoded).last_hidden_state[0, 1:-1]  # drop [CLS] and [SEP]
        return torch.nn.functional.normalize(hidden, dim=-1)

    precision, recall, f1 = [], [], []
    for gen, ref in zip(generated, reference, strict=True):
        similarity = embed(gen) @ embed(ref).T  # (generated tokens, reference tokens)
        p = float(similarity.max(dim=1).values.mean())
        r = float(similarity.max(dim=0).values.mean())
        precision.append(p)
        recall.append(r)
        f1.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
    n = len(f1)
    return {
        "bertscore_precision": sum(precision) / n,
        "bertscore_recall": sum(recall) / n,
        "bertscore_f1": sum(f1) / n,
        "variant": f"model={model_dir.name}, last layer, idf=False, rescale=False",
    }


def evaluate_external(
    metric: str,
    generated: Sequence[str],
    reference: Sequence[str],
    weights_dir: Path | None = None,
) -> dict[str, Any]:
    """Run one weight-needing metric, or say why it is unavailable.

    Parameters
    ----------
    metric : str
        A key of ``ADAPTERS``.
    generated, reference : sequence of str
        Paired reports.
    weights_dir : Path, optional
        Root of the per-metric weight folders; defaults to ``ECHOCXR_METRIC_WEIGHTS``.

    Returns
    -------
    dict
        ``{"available": True, ...numbers}`` or ``{"available": False, "reason": str}``.
    """
    if metric not in ADAPTERS:
        raise KeyError(f"unknown external metric {metric!r}; choose from {sorted(ADAPTERS)}")
    check_pairs(generated, reference)
    spec, root = ADAPTERS[metric], weights_root(weights_dir)
    reason = unavailable_reason(spec, root)
    if reason is not None or root is None:
        return {"available": False, "reason": reason}
    return {"available": True, **_bertscore(root / spec.folder, generated, reference)}
