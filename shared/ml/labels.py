"""Labels from future prices, each with the bar interval ``[t, t1]`` it depends on.

Every label of bar ``t`` uses closes from ``t`` to ``t1`` only (``t1 <= t + horizon``): changing a
bar after ``t1`` changes no label at ``t``; purging (``validation``) uses ``[t, t1]`` to keep a
training label from seeing into a test window.

* ``forward``: ``r = log(close[t+h] / close[t])``; direction = up if ``r > dead_zone``, down if
  ``r < -dead_zone``, no label inside the dead zone.
* ``triple_barrier`` (Lopez de Prado, AFML 3.4): barriers at ``close[t] * exp(+upper * vol)`` and
  ``close[t] * exp(-lower * vol)``, ``vol`` the standard deviation of the last ``vol_window`` 1-bar
  log returns up to ``t`` (past only); the first close to touch one decides (up / down), ``t1`` is
  that bar; none touched by ``t + h`` (the vertical barrier): the sign of the return there, ``t1 = t + h``.

The value of a label is the log return from ``t`` to ``t1``; its ``direction`` is 1 (up) or 0
(down). Rows without a label (the last bars, the dead zone, the volatility's warm-up) are invalid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


class Labelling(BaseModel):
    """How labels are made (stored with the model)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["forward", "triple_barrier"] = "forward"
    #: ``|r|`` at or below this gets no direction label (forward method), log-return units.
    dead_zone: float = Field(default=0.0, ge=0.0, le=1.0)
    #: Barrier widths in multiples of the rolling volatility (triple barrier).
    upper: float = Field(default=2.0, gt=0.0, le=100.0)
    lower: float = Field(default=2.0, gt=0.0, le=100.0)
    #: 1-bar log returns the volatility is taken over (triple barrier).
    vol_window: int = Field(default=20, ge=2, le=10_000)


@dataclass(frozen=True)
class Labels:
    """One label per bar: ``value`` (log return t..t1), ``direction`` (1 up, 0 down), ``end`` (t1)."""

    value: Floats
    direction: Floats
    end: Ints
    valid: Bools

    def target(self, task: Literal["direction", "return"]) -> Floats:
        return self.direction if task == "direction" else self.value


def forward_returns(close: Floats, horizon: int) -> tuple[Floats, Ints, Bools]:
    """``log(close[t+h] / close[t])``, its end bar ``t+h``, and whether it exists."""
    if horizon < 1:
        raise ValueError("horizon must be at least 1 bar")
    n = close.shape[0]
    value = np.full(n, np.nan)
    if n > horizon:
        value[: n - horizon] = np.log(close[horizon:] / close[: n - horizon])
    end = np.minimum(np.arange(n, dtype=np.int64) + horizon, n - 1)
    return value, end, np.asarray(~np.isnan(value))


def rolling_volatility(close: Floats, window: int) -> Floats:
    """Standard deviation (ddof 1) of the ``window`` 1-bar log returns ending at each bar; NaN before."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    if n <= window:
        return out
    returns = np.diff(np.log(close))
    windows = np.lib.stride_tricks.sliding_window_view(returns, window)
    out[window:] = windows.std(axis=1, ddof=1)
    return out


def make_labels(close: Floats, horizon: int, labelling: Labelling) -> Labels:
    """The labels of a series of closes under ``labelling`` over ``horizon`` bars."""
    if labelling.method == "forward":
        value, end, valid = forward_returns(close, horizon)
        direction = np.where(value > 0, 1.0, 0.0)
        decided = np.abs(np.nan_to_num(value)) > labelling.dead_zone
        direction[~(valid & decided)] = np.nan
        return Labels(value, direction, end, valid & decided)
    return triple_barrier(close, horizon, labelling.upper, labelling.lower, labelling.vol_window)


def triple_barrier(close: Floats, horizon: int, upper: float, lower: float, vol_window: int) -> Labels:
    """Triple-barrier labels (see the module docstring)."""
    n = close.shape[0]
    vol = rolling_volatility(close, vol_window)
    log_close = np.log(close)
    value = np.full(n, np.nan)
    direction = np.full(n, np.nan)
    end = np.arange(n, dtype=np.int64)
    valid = np.zeros(n, dtype=bool)
    for t in range(n - horizon):
        if np.isnan(vol[t]) or vol[t] <= 0:
            continue
        path = log_close[t + 1 : t + horizon + 1] - log_close[t]
        up = np.flatnonzero(path >= upper * vol[t])
        down = np.flatnonzero(path <= -lower * vol[t])
        first_up = int(up[0]) if up.size else horizon
        first_down = int(down[0]) if down.size else horizon
        if first_up < first_down:
            hit, label = first_up, 1.0
        elif first_down < first_up:
            hit, label = first_down, 0.0
        else:  # neither touched: the vertical barrier
            hit = horizon - 1
            if path[hit] == 0:
                continue
            label = 1.0 if path[hit] > 0 else 0.0
        value[t], direction[t], end[t], valid[t] = path[hit], label, t + 1 + hit, True
    return Labels(value, direction, end, valid)


__all__ = ["Labelling", "Labels", "forward_returns", "make_labels", "rolling_volatility", "triple_barrier"]
