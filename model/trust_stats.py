"""The statistics that turn one image and its draft into a ``model.trust.Trust``.

Fitted once per checkpoint by ``echocxr fit-trust`` (:mod:`model.trust_fit`) on phantom studies
made by the product's image path, and shipped beside the weights as ``trust.json``:

- **calibration**: per observation, ``p = sigmoid(scale * logit + bias)`` on the finding head's
  logit. Fitted on the validation split by log loss; two numbers an observation stay robust on
  rare ones, where isotonic regression overfits (benchmarks/results/trust_calibration.md);
- **out of distribution**: the Mahalanobis distance of the pooled vision features from the
  training split's mean under a shrunk covariance (the top principal directions plus one
  isotropic variance for the rest, i.e. probabilistic PCA), flagged above a validation quantile;
- **critical findings**: per observation, the highest probability threshold that still catches
  ``target_sensitivity`` of the validation positives;
- **consistency**: the probabilities under which a sentence asserting an observation, or above
  which one negating it, contradicts the image head.

The statistics record the weights they were fitted for; a checkpoint whose weights changed
since refuses them rather than calibrating another model's logits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from clinical_eval.observations import OBSERVATIONS
from model.trust import ConsistencyFlag, Trust

if TYPE_CHECKING:
    from model.vlm import VLM

TRUST_FILE = "trust.json"
TRUST_FORMAT = 1
DEFAULT_CRITICAL = ("Pneumothorax",)
# "No Finding" is what the labeler derives from the other thirteen, so it contradicts nothing
# on its own
CHECKED_OBSERVATIONS = tuple(name for name in OBSERVATIONS if name != "No Finding")
ASSERTED, NEGATED = 1, 0

Labels = Mapping[str, int | None]


class TrustStatisticsError(ValueError):
    """A ``trust.json`` is malformed, of another format, or fitted for other weights."""


@dataclass(frozen=True)
class CriticalPolicy:
    """Which observations make a draft critical, and above which calibrated probability.

    ``thresholds`` override the validation-fitted ones per observation; an observation without
    either is refused when the policy is applied, so a typo cannot silently disable an alert.
    """

    observations: tuple[str, ...] = DEFAULT_CRITICAL
    thresholds: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.observations) - set(OBSERVATIONS))
        if unknown:
            raise TrustStatisticsError(
                f"critical findings {unknown} are not CheXpert observations; choose among "
                f"{', '.join(OBSERVATIONS)}"
            )
        for name, value in self.thresholds.items():
            if not 0.0 <= value <= 1.0:
                raise TrustStatisticsError(
                    f"critical threshold of {name} must be a probability in [0, 1], got {value}"
                )


@dataclass(frozen=True)
class Calibration:
    scale: np.ndarray  # (14,)
    bias: np.ndarray  # (14,)

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """Logits ``(..., 14)`` -> calibrated probabilities."""
        return 1.0 / (1.0 + np.exp(-(self.scale * logits + self.bias)))


@dataclass(frozen=True)
class OODModel:
    """Probabilistic-PCA Mahalanobis distance of pooled vision features."""

    mean: np.ndarray  # (C,)
    components: np.ndarray  # (k, C), orthonormal rows
    variances: np.ndarray  # (k,)
    residual_variance: float
    threshold: float

    def score(self, features: np.ndarray) -> np.ndarray:
        """``(B, C)`` -> Mahalanobis distance ``(B,)``."""
        centred = features - self.mean
        projected = centred @ self.components.T  # (B, k)
        residual = (centred**2).sum(1) - (projected**2).sum(1)
        squared = (projected**2 / self.variances).sum(1) + residual / self.residual_variance
        return np.sqrt(np.maximum(squared, 0.0))


@dataclass(frozen=True)
class TrustStatistics:
    weights_sha256: str
    calibration: Calibration
    ood: OODModel
    critical_thresholds: dict[str, float]
    assert_floor: float  # asserted in text below this probability: flagged
    negate_ceiling: float  # negated in text above this probability: flagged
    provenance: dict[str, Any] = field(default_factory=dict)

    def trust(
        self,
        features: np.ndarray,
        logits: np.ndarray,
        sections: tuple[Labels, Labels] | None,
        policy: CriticalPolicy,
    ) -> Trust:
        """One image's signals: pooled features ``(C,)``, head logits ``(14,)`` and the labels
        of its draft's findings and impression (None when the draft was not labelled)."""
        probabilities = dict(zip(OBSERVATIONS, self.calibration(logits).tolist(), strict=True))
        flags = [] if sections is None else self.consistency(probabilities, *sections)
        return Trust(
            finding_probabilities=probabilities,
            ood_score=float(self.ood.score(features[None])[0]),
            ood_threshold=self.ood.threshold,
            consistency_flags=flags,
            critical_findings=self.critical(probabilities, policy),
        )

    def critical(self, probabilities: Mapping[str, float], policy: CriticalPolicy) -> list[str]:
        thresholds = {**self.critical_thresholds, **policy.thresholds}
        missing = [name for name in policy.observations if name not in thresholds]
        if missing:
            raise TrustStatisticsError(f"no critical threshold for {missing}: give one")
        return [name for name in policy.observations if probabilities[name] >= thresholds[name]]

    def consistency(
        self, probabilities: Mapping[str, float], findings: Labels, impression: Labels
    ) -> list[ConsistencyFlag]:
        """Contradictions between the two sections, and between the text and the image head."""
        flags = []
        for name in CHECKED_OBSERVATIONS:
            said = {"findings": findings.get(name), "impression": impression.get(name)}
            if {said["findings"], said["impression"]} == {ASSERTED, NEGATED}:
                where = "findings" if said["findings"] == NEGATED else "impression"
                other = "impression" if where == "findings" else "findings"
                flags.append(
                    ConsistencyFlag(
                        name,
                        "sections",
                        f"{name} is negated in the {where} and asserted in the {other}",
                    )
                )
            p = probabilities[name]
            if ASSERTED in said.values() and p < self.assert_floor:
                flags.append(
                    ConsistencyFlag(
                        name, "unsupported", f"{name} is asserted but the image head gives {p:.2f}"
                    )
                )
            if NEGATED in said.values() and p > self.negate_ceiling:
                flags.append(
                    ConsistencyFlag(
                        name, "overlooked", f"{name} is negated but the image head gives {p:.2f}"
                    )
                )
        return flags

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": TRUST_FORMAT,
            "weights_sha256": self.weights_sha256,
            "provenance": self.provenance,
            "calibration": {
                "scale": per_observation(self.calibration.scale),
                "bias": per_observation(self.calibration.bias),
            },
            "ood": {
                "mean": rounded(self.ood.mean),
                "components": [rounded(row) for row in self.ood.components],
                "variances": rounded(self.ood.variances),
                "residual_variance": self.ood.residual_variance,
                "threshold": self.ood.threshold,
            },
            "critical_thresholds": self.critical_thresholds,
            "consistency": {
                "assert_floor": self.assert_floor,
                "negate_ceiling": self.negate_ceiling,
            },
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> TrustStatistics:
        if document.get("format_version") != TRUST_FORMAT:
            raise TrustStatisticsError(
                f"{TRUST_FILE} format {document.get('format_version')!r}, this code reads "
                f"{TRUST_FORMAT}: refit it with `echocxr fit-trust`"
            )
        try:
            ood = document["ood"]
            return cls(
                weights_sha256=str(document["weights_sha256"]),
                calibration=Calibration(
                    scale=by_observation(document["calibration"]["scale"]),
                    bias=by_observation(document["calibration"]["bias"]),
                ),
                ood=OODModel(
                    mean=np.asarray(ood["mean"], dtype=np.float64),
                    components=np.asarray(ood["components"], dtype=np.float64),
                    variances=np.asarray(ood["variances"], dtype=np.float64),
                    residual_variance=float(ood["residual_variance"]),
                    threshold=float(ood["threshold"]),
                ),
                critical_thresholds={
                    k: float(v) for k, v in document["critical_thresholds"].items()
                },
                assert_floor=float(document["consistency"]["assert_floor"]),
                negate_ceiling=float(document["consistency"]["negate_ceiling"]),
                provenance=dict(document.get("provenance", {})),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise TrustStatisticsError(f"{TRUST_FILE} is malformed ({err!r}): refit it") from err

    def save(self, directory: Path) -> Path:
        path = Path(directory) / TRUST_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        tmp.replace(path)
        return path


def image_signals(
    vlm: VLM, pixels: torch.Tensor, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled vision features ``(N, C)`` and finding-head logits ``(N, 14)`` of ``(N, 1, S, S)``."""
    features, logits = [], []
    with torch.inference_mode():
        for first in range(0, pixels.shape[0], batch_size):
            pooled, head = vlm.image_signals(pixels[first : first + batch_size].to(vlm.device))
            features.append(pooled.double().cpu().numpy())
            logits.append(head.double().cpu().numpy())
    return np.concatenate(features), np.concatenate(logits)


def load_trust_statistics(directory: Path, weights_sha256: str) -> TrustStatistics | None:
    """A checkpoint's ``trust.json``, or None when it ships none; refused if fitted for other
    weights."""
    path = Path(directory) / TRUST_FILE
    if not path.is_file():
        return None
    try:
        statistics = TrustStatistics.from_json(json.loads(path.read_text()))
    except json.JSONDecodeError as err:
        raise TrustStatisticsError(f"{path} is not valid JSON ({err}): refit it") from err
    if statistics.weights_sha256 != weights_sha256:
        raise TrustStatisticsError(
            f"{path} was fitted for other weights ({statistics.weights_sha256[:12]}...): run "
            f"`echocxr fit-trust --checkpoint {directory}` again"
        )
    return statistics


def per_observation(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    return {name: round(float(v), 6) for name, v in zip(OBSERVATIONS, values, strict=True)}


def by_observation(values: Mapping[str, float]) -> np.ndarray:
    return np.asarray([float(values[name]) for name in OBSERVATIONS], dtype=np.float64)


def rounded(values: np.ndarray) -> list[float]:
    """Six significant digits: the distance moves by < 1e-4, the file shrinks by half."""
    return [float(f"{v:.6g}") if math.isfinite(v) else float(v) for v in values.tolist()]
