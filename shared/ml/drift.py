"""Training feature distributions and the population stability index (PSI) against them.

At training, each feature's values are cut at their quantiles (``bins`` bins, interior edges
kept, ties merged) and the share of training rows in each bin recorded with the model. Live,
pattern-validator counts a window of feature values into the same bins and computes
``PSI = sum((live - train) * ln(live / train))`` (shares floored at ``EPSILON``); about 0.1 is
a shift worth watching, 0.25 a drift.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

Floats = npt.NDArray[np.float64]
#: Smallest share a bin counts with, so an empty bin gives a large but finite PSI.
EPSILON = 1e-4


class Distribution(BaseModel):
    """One feature's training distribution: interior bin edges and the share of rows per bin
    (``len(proportions) == len(edges) + 1``; bin ``i`` is ``edges[i-1] <= x < edges[i]``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    edges: list[float]
    proportions: list[float]


def proportions(values: Floats, edges: Sequence[float]) -> Floats:
    """Share of ``values`` (NaN ignored) in each bin of ``edges``."""
    v = values[~np.isnan(values)]
    counts = np.bincount(np.searchsorted(np.asarray(edges), v, side="right"), minlength=len(edges) + 1)
    total = counts.sum()
    return np.asarray(counts / total if total else counts.astype(np.float64), dtype=np.float64)


def distribution(values: Floats, bins: int = 10) -> Distribution:
    """Quantile bins of ``values`` (NaN ignored) and their training shares."""
    v = values[~np.isnan(values)]
    if v.size == 0:
        return Distribution(edges=[], proportions=[1.0])
    inner = np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1])
    edges = [float(e) for e in np.unique(inner)]
    return Distribution(edges=edges, proportions=[float(p) for p in proportions(v, edges)])


def distributions(x: Floats, names: Sequence[str], bins: int = 10) -> dict[str, Distribution]:
    """Every feature's distribution over the rows of ``x`` (columns in ``names`` order)."""
    return {name: distribution(x[:, i], bins) for i, name in enumerate(names)}


def psi(train: Distribution, live: Floats) -> float:
    """Population stability index of ``live`` values against ``train``."""
    expected = np.maximum(np.asarray(train.proportions), EPSILON)
    actual = np.maximum(proportions(live, train.edges), EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


__all__ = ["EPSILON", "Distribution", "distribution", "distributions", "proportions", "psi"]
