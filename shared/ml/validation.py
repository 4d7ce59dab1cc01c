"""Walk-forward splits with purging and an embargo (Lopez de Prado, AFML ch. 7).

Samples are labelled rows in time order; sample ``i`` starts at ``start[i]`` (its bar's open
time) and its label depends on prices up to ``end[i]``. The samples are cut into
``folds + 1`` consecutive blocks; fold ``k`` tests block ``k + 1``, whose *test window* runs
from its first sample's start to its last label's end. A training sample is kept only if

* its label interval ``[start, end]`` does not overlap the test window (**purge**: a label
  that saw test-window prices would leak them), and
* it does not start within ``embargo`` after the test window (**embargo**: features computed
  from the test window's prices, e.g. a 20-bar volatility, would leak them backwards).

``past_only`` (walk-forward proper, the default) trains only on samples before the test block;
without it the samples after the test window count too (purged k-fold), which is where the
embargo bites. Times are any monotonic integer (ns here), so several symbols merge by time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Fold:
    """Sample indices to train and test on, and how many samples purging and the embargo removed."""

    train: Ints
    test: Ints
    test_window: tuple[int, int]
    purged: int
    embargoed: int


def walk_forward(start: Ints, end: Ints, folds: int, embargo: int, *, past_only: bool = True) -> list[Fold]:
    """The folds for samples with label intervals ``[start[i], end[i]]``, in time order (see above)."""
    n = start.shape[0]
    if end.shape[0] != n:
        raise ValueError("start and end differ in length")
    if folds < 1:
        raise ValueError("at least one fold")
    if n < folds + 1:
        raise ValueError(f"{n} samples cannot make {folds} folds")
    if np.any(np.diff(start) < 0) or np.any(end < start):
        raise ValueError("samples must be in time order with end >= start")
    bounds = np.linspace(0, n, folds + 2).astype(np.int64)
    out = []
    for k in range(1, folds + 1):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        test = np.arange(lo, hi, dtype=np.int64)
        t0, t1 = int(start[lo]), int(end[lo:hi].max())
        candidates = np.arange(0, lo, dtype=np.int64)
        if not past_only:
            candidates = np.concatenate([candidates, np.arange(hi, n, dtype=np.int64)])
        overlaps = (start[candidates] <= t1) & (end[candidates] >= t0)
        embargoed = ~overlaps & (start[candidates] > t1) & (start[candidates] <= t1 + embargo)
        keep = candidates[~overlaps & ~embargoed]
        out.append(Fold(keep, test, (t0, t1), int(overlaps.sum()), int(embargoed.sum())))
    return out


def holdout_tail(start: Ints, end: Ints, fraction: float, embargo: int) -> Fold:
    """A validation slice from the END of the samples (early stopping), purged and embargoed like a
    walk-forward test window: ``test`` is the last ``fraction`` of the samples (at least one),
    ``train`` the earlier ones whose label interval does not reach into the slice's window.

    (Samples are in time order, so none start after the slice and the embargo only matters when
    several series merged by time interleave around its start.)
    """
    n = start.shape[0]
    if end.shape[0] != n:
        raise ValueError("start and end differ in length")
    if not 0.0 < fraction < 1.0:
        raise ValueError("fraction must be in (0, 1)")
    size = max(1, round(n * fraction))
    if n - size < 1:
        raise ValueError(f"{n} samples leave nothing to train on after a validation slice of {size}")
    lo = n - size
    test = np.arange(lo, n, dtype=np.int64)
    t0, t1 = int(start[lo]), int(end[lo:].max())
    candidates = np.arange(0, lo, dtype=np.int64)
    overlaps = (start[candidates] <= t1) & (end[candidates] >= t0)
    embargoed = ~overlaps & (start[candidates] > t1) & (start[candidates] <= t1 + embargo)
    keep = candidates[~overlaps & ~embargoed]
    return Fold(keep, test, (t0, t1), int(overlaps.sum()), int(embargoed.sum()))


__all__ = ["Fold", "holdout_tail", "walk_forward"]
