"""Fitting a checkpoint's trust statistics (``trust.json``; ``echocxr fit-trust``).

Every statistic is fitted on phantom studies made by the product's image path (DICOM written,
read by ``dicom.read_study``, ``dicom.to_model_input``; :func:`model.data.datasets.phantom_cache`),
never on the test split the benchmarks report:

- the calibration and the thresholds on the validation split;
- the out-of-distribution mean and covariance on the training split, their threshold at the
  ``OOD_QUANTILE`` of the validation split's distances.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from clinical_eval.observations import OBSERVATIONS
from model.data.datasets import PHANTOM_INPUT_PATH, phantom_cache, read_cache
from model.trust_stats import (
    Calibration,
    OODModel,
    TrustStatistics,
    TrustStatisticsError,
    image_signals,
)

# principal directions kept whole; the rest share one variance (the covariance's shrinkage)
OOD_COMPONENTS = 64
# 1% of in-distribution studies flagged on validation, so the 2% goal holds with room
OOD_QUANTILE = 0.99
CRITICAL_SENSITIVITY = 0.9
# asserted with a calibrated probability under 0.1, or negated over 0.95: the text contradicts
# the image head (benchmarks/results/trust_consistency.md measures how often each is right)
ASSERT_FLOOR, NEGATE_CEILING = 0.1, 0.95


def fit_calibration(logits: np.ndarray, positive: np.ndarray, *, bias: bool = True) -> Calibration:
    """Per-observation ``sigmoid(scale * logit + bias)`` by log loss (``bias=False``: temperature
    scaling). ``logits`` and ``positive`` are ``(N, 14)``."""
    z = torch.from_numpy(logits)
    y = torch.from_numpy(positive.astype(np.float64))
    scale = torch.ones(z.shape[1], dtype=torch.float64, requires_grad=True)
    shift = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=bias)
    params = [scale, shift] if bias else [scale]
    optimizer = torch.optim.LBFGS(params, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(scale * z + shift, y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return Calibration(scale.detach().numpy().copy(), shift.detach().numpy().copy())


def fit_ood(train: np.ndarray, val: np.ndarray, components: int = OOD_COMPONENTS) -> OODModel:
    """Mean and probabilistic-PCA covariance of the training features; threshold on validation."""
    components = min(components, train.shape[1] - 1)  # at least one direction shares the rest
    mean = train.mean(0)
    covariance = np.cov(train - mean, rowvar=False)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
    residual = float(max(eigenvalues[components:].mean(), 1e-12))
    unscored = OODModel(
        mean=mean,
        components=eigenvectors[:, :components].T,
        variances=np.maximum(eigenvalues[:components], residual),
        residual_variance=residual,
        threshold=float("inf"),
    )
    threshold = float(np.quantile(unscored.score(val), OOD_QUANTILE))
    return OODModel(
        unscored.mean,
        unscored.components,
        unscored.variances,
        unscored.residual_variance,
        threshold,
    )


def critical_thresholds(
    probabilities: np.ndarray, positive: np.ndarray, sensitivity: float = CRITICAL_SENSITIVITY
) -> dict[str, float]:
    """Per observation, the highest threshold that keeps ``sensitivity`` on the positives (the
    fewest false alarms at that sensitivity); 0.5 where validation holds no positive."""
    thresholds = {}
    for index, name in enumerate(OBSERVATIONS):
        scores = probabilities[positive[:, index], index]
        value = float(np.quantile(scores, 1 - sensitivity, method="lower")) if scores.size else 0.5
        thresholds[name] = math.floor(value * 1e6) / 1e6  # rounded down: keeps the lowest one
    return thresholds


def split_inputs(
    cache_dir: Path, seed: int, studies: int, split: str, size: int
) -> tuple[torch.Tensor, np.ndarray]:
    """A split's model inputs ``(N, 1, S, S)`` from its DICOM-path cache, and its positives."""
    images, records = read_cache(phantom_cache(cache_dir, seed, studies, split, size))
    pixels = torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0)[:, None]
    positive = np.array([[r.labels.get(name) == 1 for name in OBSERVATIONS] for r in records])
    return pixels, positive


def fit(
    checkpoint_dir: Path,
    cache_dir: Path,
    seed: int,
    val_studies: int,
    train_studies: int,
) -> TrustStatistics:
    """Fit a checkpoint's trust statistics (not written; see :meth:`TrustStatistics.save`)."""
    from model.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint_dir)
    if loaded.vlm.findings is None:
        raise TrustStatisticsError(
            f"{checkpoint_dir} has no finding head (vision.finding_tokens): its drafts carry no "
            "trust signals"
        )
    size = loaded.vlm.config.image_size
    val_pixels, val_positive = split_inputs(cache_dir, seed, val_studies, "val", size)
    train_pixels, _ = split_inputs(cache_dir, seed, train_studies, "train", size)
    val_features, val_logits = image_signals(loaded.vlm, val_pixels)
    train_features, _ = image_signals(loaded.vlm, train_pixels)
    calibration = fit_calibration(val_logits, val_positive)
    return TrustStatistics(
        weights_sha256=loaded.weights_sha256,
        calibration=calibration,
        ood=fit_ood(train_features, val_features),
        critical_thresholds=critical_thresholds(calibration(val_logits), val_positive),
        assert_floor=ASSERT_FLOOR,
        negate_ceiling=NEGATE_CEILING,
        provenance={
            "phantom_seed": seed,
            "calibration_and_thresholds": f"val split, {val_studies} studies",
            "ood_fit": f"train split, {train_studies} studies",
            "ood_quantile": OOD_QUANTILE,
            "critical_sensitivity": CRITICAL_SENSITIVITY,
            "input_path": PHANTOM_INPUT_PATH,
        },
    )
