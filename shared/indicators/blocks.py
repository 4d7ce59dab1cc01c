"""Streaming building blocks of the indicators: moving averages and rolling extremes.

Each block takes one value at a time with O(1) work (amortised for the rolling extremes)
and keeps only what the next value needs, in attributes that ``state()`` turns into
JSON and ``load()`` restores. The arithmetic mirrors TA-Lib's C code operation by
operation (same sums, same order), so the values agree with TA-Lib's to the last bits,
not just to a tolerance.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any, ClassVar

#: TA-Lib's ``TA_EPSILON`` (ta_utility.h): ``TA_IS_ZERO(v)`` is ``-eps < v < eps``.
TA_EPSILON = 1e-14


def is_zero(value: float) -> bool:
    """TA-Lib's ``TA_IS_ZERO``: a denominator this close to zero gives the function's fallback."""
    return -TA_EPSILON < value < TA_EPSILON


def is_zero_scaled(value: float, scale: float) -> bool:
    """TA-Lib's ``TA_IS_ZERO_SCALED`` (issue #253): zero within ``TA_EPSILON`` of the operands'
    magnitude, for a difference of comparable numbers (a flat window at any price level)."""
    return abs(value) <= TA_EPSILON * scale


def population_stddev(window: Iterable[float], period: int) -> float:
    """Standard deviation of ``window`` (``period`` values): mean first, then the mean squared
    deviation, which keeps its precision where the mean of squares minus the squared mean loses it."""
    total = 0.0
    for value in window:
        total += value
    mean = total / period
    squares = 0.0
    for value in window:
        diff = value - mean
        squares += diff * diff
    variance = squares / period
    return variance**0.5 if variance > 0.0 else 0.0


class IndicatorError(ValueError):
    """A parameter or input an indicator cannot take; ``field`` names it (``params.timeperiod``, ``high``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Stateful:
    """Serialises the attributes named in ``_fields`` (deques become lists) and the nested
    blocks named in ``_children``; ``load`` is the inverse on an object built with the same
    parameters."""

    _fields: ClassVar[tuple[str, ...]] = ()
    _children: ClassVar[tuple[str, ...]] = ()

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self._fields:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, deque) else value
        for name in self._children:
            out[name] = getattr(self, name).state()
        return out

    def load(self, data: dict[str, Any]) -> None:
        for name in self._fields:
            current = getattr(self, name)
            value = data[name]
            setattr(self, name, deque(value, maxlen=current.maxlen) if isinstance(current, deque) else value)
        for name in self._children:
            getattr(self, name).load(data[name])


class MovingAverage(Stateful):
    """One value in, the average out (``None`` until its warm-up is complete)."""

    def update(self, value: float) -> float | None:
        raise NotImplementedError


class Identity(MovingAverage):
    """TA-Lib's ``TA_MA`` with a period of 1: the input itself."""

    def update(self, value: float) -> float | None:
        return value


class Sma(MovingAverage):
    """``TA_INT_SMA``: a running total; the oldest value leaves after the average is taken."""

    _fields = ("window", "total")

    def __init__(self, period: int) -> None:
        self.period = period
        self.window: deque[float] = deque(maxlen=period)
        self.total = 0.0

    def update(self, value: float) -> float | None:
        self.window.append(value)
        self.total += value
        if len(self.window) < self.period:
            return None
        out = self.total / self.period
        self.total -= self.window[0]
        return out


class Ema(MovingAverage):
    """``TA_INT_EMA`` (default compatibility): seeded with the SMA of the first ``period`` values,
    then ``prev + (x - prev) * k`` with ``k = 2 / (period + 1)``."""

    _fields = ("count", "prev")

    def __init__(self, period: int) -> None:
        self.period = period
        self.k = 2.0 / (period + 1)
        self.count = 0
        self.prev = 0.0  # the running sum until seeded, then the average

    def update(self, value: float) -> float | None:
        if self.count < self.period:
            self.count += 1
            self.prev += value
            if self.count < self.period:
                return None
            self.prev = self.prev / self.period
            return self.prev
        self.prev = ((value - self.prev) * self.k) + self.prev
        return self.prev


class Wma(MovingAverage):
    """``TA_INT_WMA``: weights 1..period kept as a running weighted sum and a running plain sum."""

    _fields = ("window", "count", "period_sum", "period_sub", "trailing")

    def __init__(self, period: int) -> None:
        self.period = period
        self.divider = (period * (period + 1)) >> 1
        self.window: deque[float] = deque(maxlen=period)
        self.count = 0
        self.period_sum = 0.0
        self.period_sub = 0.0
        self.trailing = 0.0

    def update(self, value: float) -> float | None:
        self.window.append(value)
        if self.count < self.period - 1:
            self.count += 1
            self.period_sub += value
            self.period_sum += value * self.count
            return None
        self.period_sub += value
        self.period_sub -= self.trailing
        self.period_sum += value * self.period
        self.trailing = self.window[0]
        out = self.period_sum / self.divider
        self.period_sum -= self.period_sub
        return out


#: TA-Lib's MA types this library computes (``TA_MAType``); the others are refused.
MA_TYPES: dict[int, str] = {0: "SMA", 1: "EMA", 2: "WMA"}
#: TA-Lib's full range of ``matype`` (0 SMA .. 8 T3): accepted as parameters, then refused by name.
TA_MA_TYPE_NAMES = ("SMA", "EMA", "WMA", "DEMA", "TEMA", "TRIMA", "KAMA", "MAMA", "T3")


def moving_average(matype: int, period: int, field: str = "params.matype") -> MovingAverage:
    """TA-Lib's ``TA_MA`` for ``matype`` 0 (SMA), 1 (EMA) and 2 (WMA); a period of 1 is the input itself."""
    if matype not in MA_TYPES:
        name = TA_MA_TYPE_NAMES[matype] if 0 <= matype < len(TA_MA_TYPE_NAMES) else str(matype)
        raise IndicatorError(field, f"matype {matype} ({name}) is not supported; use 0 (SMA), 1 (EMA) or 2 (WMA)")
    if period == 1:
        return Identity()
    return {0: Sma, 1: Ema, 2: Wma}[matype](period)


class RollingExtreme(Stateful):
    """The highest (or lowest) of the last ``period`` values: a monotonic queue, amortised O(1)."""

    _fields = ("index", "positions", "values")

    def __init__(self, period: int, *, highest: bool) -> None:
        self.period = period
        self.highest = highest
        self.index = -1
        self.positions: deque[int] = deque()
        self.values: deque[float] = deque()

    def update(self, value: float) -> float:
        self.index += 1
        values, positions = self.values, self.positions
        if self.highest:
            while values and values[-1] <= value:
                values.pop()
                positions.pop()
        else:
            while values and values[-1] >= value:
                values.pop()
                positions.pop()
        values.append(value)
        positions.append(self.index)
        while positions[0] <= self.index - self.period:
            positions.popleft()
            values.popleft()
        return values[0]

    @property
    def full(self) -> bool:
        return self.index >= self.period - 1


def true_range(high: float, low: float, prev_close: float) -> float:
    """TA-Lib's ``TRUE_RANGE``: the largest of high-low, |high-prev close|, |low-prev close|."""
    out = high - low
    other = abs(high - prev_close)
    if other > out:
        out = other
    other = abs(low - prev_close)
    if other > out:
        out = other
    return out
