"""Replica statistics of the activation energy: means, standard errors, 95 % intervals.

One 10 K pull is one sample of Ea (hexane with GFN2-xTB scatters by ~0.2 eV between seeds), so
the campaign compares the mean of NNP replicas with the mean of reference replicas. The
interval of the difference is Welch's (unequal variances; pairing each NNP pull with the
reference pull it starts from does not narrow it, because 3 ps of dynamics decorrelate the
two); the paired interval is reported beside it. Student-t quantiles come from scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Confidence level of every interval the campaign reports.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Sample:
    """Mean, standard deviation (ddof=1) and standard error of replica values."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Sample:
        values = tuple(float(v) for v in values)
        if not values:
            raise ValueError("a sample needs at least one value")
        return cls(values)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        """Sample standard deviation (NaN for one value)."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else math.nan

    @property
    def sem(self) -> float:
        """Standard error of the mean (NaN for one value)."""
        return self.std / math.sqrt(self.n) if self.n > 1 else math.nan


@dataclass(frozen=True)
class Difference:
    """A difference of means with the half-width of its confidence interval."""

    estimate: float
    half_width: float
    dof: float

    @property
    def low(self) -> float:
        return self.estimate - self.half_width

    @property
    def high(self) -> float:
        return self.estimate + self.half_width

    def within(self, tolerance: float) -> bool:
        """Whether the whole interval lies inside +- ``tolerance`` (False when undefined)."""
        return math.isfinite(self.half_width) and abs(self.estimate) + self.half_width <= tolerance


def welch(a: Sample, b: Sample, confidence: float = CONFIDENCE) -> Difference:
    """mean(a) - mean(b) with Welch's interval (Welch-Satterthwaite degrees of freedom).

    With one value on either side the spread of that side is unknown: the half-width is NaN.
    """
    estimate = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        return Difference(estimate, math.nan, math.nan)
    va, vb = a.std**2 / a.n, b.std**2 / b.n
    variance = va + vb
    if variance == 0.0:
        return Difference(estimate, 0.0, math.inf)
    dof = variance**2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    return Difference(estimate, _t_quantile(confidence, dof) * math.sqrt(variance), dof)


def paired(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Difference:
    """Mean of a_i - b_i with the t interval of the differences (a and b of equal length)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    differences = Sample.of(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))
    if differences.n < 2:
        return Difference(differences.mean, math.nan, math.nan)
    dof = differences.n - 1
    return Difference(differences.mean, _t_quantile(confidence, dof) * differences.sem, dof)


def replicas_for_half_width(
    std_a: float, std_b: float, half_width: float, confidence: float = CONFIDENCE
) -> int:
    """Replicas per side (equal numbers) for a Welch interval of at most ``half_width``.

    Solves t(dof) * sqrt((std_a^2 + std_b^2) / n) <= half_width, with the Welch degrees of
    freedom of equal-size samples; the spreads are those measured so far.
    """
    if half_width <= 0:
        raise ValueError("half_width must be positive")
    variance = std_a**2 + std_b**2
    if not math.isfinite(variance):
        raise ValueError("the replica spreads are unknown (fewer than two replicas)")
    if variance == 0.0:
        return 2
    # the normal quantile is below every t quantile: start the search at its answer
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    n = max(2, math.ceil(z**2 * variance / half_width**2))
    while True:
        va, vb = std_a**2 / n, std_b**2 / n
        dof = (va + vb) ** 2 / ((va**2 + vb**2) / (n - 1)) if va + vb > 0 else math.inf
        if _t_quantile(confidence, dof) * math.sqrt(variance / n) <= half_width:
            return n
        n += 1


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: an undefined statistic (a spread of one replica) is written as null."""
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _t_quantile(confidence: float, dof: float) -> float:
    return float(stats.t.ppf(0.5 + confidence / 2.0, dof))
