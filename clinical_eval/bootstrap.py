"""Bootstrap confidence intervals and paired bootstrap tests over studies.

Studies are resampled with replacement and the statistic recomputed on each resample (percentile
interval, Efron & Tibshirani 1993). The paired test resamples the same study indices for both
systems, so a difference reflects the systems, not which studies were drawn (Koehn 2004). Seeds
are fixed so an audit rerun gives the same intervals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray

Statistic = Callable[[NDArray[np.int64]], float]
"""A metric over the studies at the given indices (indices may repeat)."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        """Plain numbers for JSON."""
        return asdict(self)


@dataclass(frozen=True)
class PairedTest:
    """System B minus system A on the same studies, with a two-sided bootstrap p-value."""

    delta: float
    low: float
    high: float
    p_value: float

    def as_dict(self) -> dict[str, float]:
        """Plain numbers for JSON."""
        return asdict(self)


def _resamples(n: int, n_resamples: int, seed: int) -> NDArray[np.int64]:
    if n < 1:
        raise ValueError("bootstrap needs at least one study")
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def bootstrap_ci(
    statistic: Statistic, n: int, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> Interval:
    """Percentile interval of ``statistic`` over ``n`` studies."""
    draws = np.array([statistic(idx) for idx in _resamples(n, n_resamples, seed)])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Interval(statistic(np.arange(n)), float(low), float(high))


def paired_bootstrap(
    statistic_a: Statistic,
    statistic_b: Statistic,
    n: int,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> PairedTest:
    """Whether B differs from A: interval of the difference and a two-sided p-value.

    The p-value is twice the share of resamples on the far side of zero from the observed
    difference (capped at 1), the usual paired-bootstrap estimate.
    """
    deltas = np.array(
        [statistic_b(idx) - statistic_a(idx) for idx in _resamples(n, n_resamples, seed)]
    )
    full = np.arange(n)
    observed = statistic_b(full) - statistic_a(full)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    far_side = float(np.mean(deltas <= 0) if observed > 0 else np.mean(deltas >= 0))
    return PairedTest(float(observed), float(low), float(high), min(1.0, 2 * far_side))


def mean_of(values: NDArray[np.float64]) -> Statistic:
    """The statistic "mean of these per-study values", for per-sample metrics like ROUGE-L."""
    return lambda idx: float(values[idx].mean())
