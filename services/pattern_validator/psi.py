"""Population stability index of live values against a training distribution.

The training distribution of a feature is given as quantile bin edges and the share of the
training rows per bin (the model registry keeps them). ``edges`` are the ``k + 1`` ascending
bounds of ``k`` bins; the outer two are treated as open (a live value below the first edge
counts in the first bin, above the last in the last), so only the inner ``k - 1`` decide.
Bin ``i`` holds ``edges[i] <= x < edges[i + 1]``.

``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)``, ``a`` the live shares, ``e`` the training shares,
each floored at ``EPSILON`` so an empty bin does not make it infinite. Conventional reading:
< 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

import numpy as np

EPSILON = 1e-4


@dataclass(frozen=True)
class Bins:
    edges: tuple[float, ...]
    proportions: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.edges) != len(self.proportions) + 1 or len(self.proportions) < 1:
            raise ValueError("a distribution needs k + 1 edges for k proportions")
        if any(b < a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must be ascending")


@dataclass(frozen=True)
class TrainingDistribution:
    """One model's training inputs, per feature."""

    model_id: UUID
    model_name: str
    model_version: int
    features: dict[str, Bins]


class TrainingDistributions(Protocol):
    """Where the validator finds a model's training distribution (the model registry)."""

    async def of(self, model_id: UUID) -> TrainingDistribution | None: ...


class NoDistributions:
    async def of(self, model_id: UUID) -> TrainingDistribution | None:
        return None


def live_shares(bins: Bins, values: Sequence[float]) -> np.ndarray:
    inner = np.asarray(bins.edges[1:-1], dtype=float)
    idx = np.searchsorted(inner, np.asarray(values, dtype=float), side="right")
    counts = np.bincount(idx, minlength=len(bins.proportions)).astype(float)
    return counts / counts.sum()


def psi(bins: Bins, values: Sequence[float]) -> float:
    """The PSI of ``values`` against ``bins`` (``values`` must not be empty)."""
    actual = np.maximum(live_shares(bins, values), EPSILON)
    expected = np.maximum(np.asarray(bins.proportions, dtype=float), EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))
