"""The streaming indicators, one class each, named and parameterised as TA-Lib names them.

Every class follows its TA-Lib C function (``src/ta_func/ta_<NAME>.c``, TA-Lib 0.8) step by
step: the same seeding (an SMA of the first ``timeperiod`` values for the EMA family, Wilder's
sums for RSI/ATR/ADX/MFI), the same warm-up (TA-Lib's lookback, default unstable period 0), the
same zero tests and the same order of floating-point operations. ``update`` takes one bar and
returns one value per output, ``None`` where TA-Lib gives NaN. Work per bar is O(1), except
CCI, whose mean deviation is O(timeperiod) by definition (TA-Lib's too).
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

from shared.indicators.blocks import (
    Ema,
    Identity,
    MovingAverage,
    RollingExtreme,
    Stateful,
    is_zero,
    is_zero_scaled,
    moving_average,
    population_stddev,
    true_range,
)

Params = dict[str, Any]
Outputs = tuple[float | None, ...]


class Indicator(Stateful):
    """One indicator over one series of bars. ``params`` are complete (defaults filled in)."""

    name: ClassVar[str]
    outputs: ClassVar[tuple[str, ...]] = ("real",)

    def __init__(self, params: Params) -> None:
        self.params = params

    def update(self, open_: float, high: float, low: float, close: float, volume: float) -> Outputs:
        """Take the next bar; return this bar's value of every output (``None`` while warming up)."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """Everything needed to continue this series elsewhere, as JSON-serialisable data."""
        return {"name": self.name, "params": dict(self.params), "data": super().state()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Indicator:
        """The indicator ``state()`` described, ready for the next bar."""
        from shared.indicators.registry import create

        indicator = create(state["name"], state["params"])
        Stateful.load(indicator, state["data"])
        return indicator


_NONE1: Outputs = (None,)


class _MovingAverageOfClose(Indicator):
    _children = ("ma",)
    matype: ClassVar[int]

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.ma: MovingAverage = moving_average(self.matype, params["timeperiod"])

    def update(self, open_: float, high: float, low: float, close: float, volume: float) -> Outputs:
        return (self.ma.update(close),)


class SMA(_MovingAverageOfClose):
    name = "SMA"
    matype = 0


class EMA(_MovingAverageOfClose):
    name = "EMA"
    matype = 1


class WMA(_MovingAverageOfClose):
    name = "WMA"
    matype = 2


class RSI(Indicator):
    """``ta_RSI.c``: Wilder's average gain and loss, seeded by their plain means over ``timeperiod``."""

    name = "RSI"
    _fields = ("prev_value", "count", "prev_gain", "prev_loss")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.period: int = params["timeperiod"]
        self.prev_value: float | None = None
        self.count = 0
        self.prev_gain = 0.0
        self.prev_loss = 0.0

    def update(self, open_: float, high: float, low: float, close: float, volume: float) -> Outputs:
        if self.prev_value is None:
            self.prev_value = close
            return _NONE1
        diff = close - self.prev_value
        self.prev_value = close
        period = self.period
        if self.count < period:
            self.count += 1
            if diff < 0.0:
                self.prev_loss -= diff
            else:
                self.prev_gain += diff
            if self.count < period:
                return _NONE1
        else:
            self.prev_loss *= period - 1
            self.prev_gain *= period - 1
            if diff < 0.0:
                self.prev_loss -= diff
            else:
                self.prev_gain += diff
        self.prev_loss /= period
        self.prev_gain /= period
        total = self.prev_gain + self.prev_loss
        return (100.0 * (self.prev_gain / total) if not is_zero(total) else 0.0,)


class MACD(Indicator):
    """``ta_MACD.c``: TA-Lib starts the fast EMA where the slow one gives its first value (both
    seeded there), so the fast EMA sees only the last ``fastperiod`` bars of the slow one's seed."""

    name = "MACD"
    outputs = ("macd", "macdsignal", "macdhist")
    _fields = ("count",)
    _children = ("fast", "slow", "signal")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        fast, slow = params["fastperiod"], params["slowperiod"]
        if slow < fast:  # TA-Lib swaps them
            fast, slow = slow, fast
        self.fast_start = slow - fast
        self.count = 0
        self.fast = Ema(fast)
        self.slow = Ema(slow)
        self.signal: MovingAverage = Ema(params["signalperiod"]) if params["signalperiod"] > 1 else Identity()

    def update(self, open_: float, high: float, low: float, close: float, volume: float) -> Outputs:
        slow = self.slow.update(close)
        if self.count < self.fast_start:
            self.count += 1
            return (None, None, None)
        fast = self.fast.update(close)
        if fast is None or slow is None:
            return (None, None, None)
        macd = fast - slow
        signal = self.signal.update(macd)
        if signal is None:
            return (None, None, None)
        return (macd, signal, macd - signal)


class BBANDS(Indicator):
    """``ta_BBANDS.c``: middle = MA(matype); the deviation is the population standard deviation
    of the last ``timeperiod`` closes, taken in two passes over the window (mean, then squared
    deviations) as TA-Lib 0.8 does: O(timeperiod) per bar, never recomputing history."""

    name = "BBANDS"
    outputs = ("upperband", "middleband", "lowerband")
    _fields = ("window",)
    _children = ("middle",)

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.period: int = params["timeperiod"]
        self.middle = moving_average(params["matype"], self.period)
        self.window: deque[float] = deque(maxlen=self.period)
        self.up: float = params["nbdevup"]
        self.dn: float = params["nbdevdn"]

    def update(self, open_: float, high: float, low: float, close: float, volume: float) -> Outputs:
        middle = self.middle.update(close)
        window = self.window
        window.append(close)
        if middle is None or len(window) < self.period:
            return (None, None, None)
        deviation = population_stddev(window, self.period)
        return (middle + deviation * self.up, middle, middle - deviation * self.dn)


class ATR(Indicator):
    """``ta_ATR.c``: the true range starts at the second bar; seeded with the mean of the first
    ``timeperiod`` true ranges, then Wilder's smoothing. A period of 1 is the true range."""

    name = "ATR"
    _fields = ("prev_close", "count", "prev_atr")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.period: int = params["timeperiod"]
        self.prev_close: float | None = None
        self.count = 0
        self.prev_atr = 0.0

    def _atr(self, high: float, low: float, close: float) -> float | None:
        if self.prev_close is None:
            self.prev_close = close
            return None
        tr = true_range(high, low, self.prev_close)
        self.prev_close = close
        period = self.period
        if period <= 1:
            return tr
        if self.count < period:
            self.count += 1
            self.prev_atr += tr
            if self.count < period:
                return None
            self.prev_atr = self.prev_atr / period
            return self.prev_atr
        self.prev_atr *= period - 1
        self.prev_atr += tr
        self.prev_atr /= period
        return self.prev_atr

    def update(self, open_: float, high: float, low: float, close: float, volume: float) -> Outputs:
        return (self._atr(high, low, close),)


class NATR(ATR):
    """``ta_NATR.c``: ATR / close * 100 (0 when the close is zero). With a period of 1 TA-Lib
    returns the plain true range, not normalised; so does this."""

    name = "NATR"

    def update(self, open_: float, high: float, low: float, close: float, volume: float) -> Outputs:
        atr = self._atr(high, low, close)
        if atr is None or self.period <= 1:
            return (atr,)
        return ((atr / close) * 100.0 if not is_zero(close) else 0.0,)


class STOCH(Indicator):
    """``ta_STOCH.c``: fast %K over ``fastk_period``, slow %K = MA(fast %K), slow %D = MA(slow %K)."""

    name = "STOCH"
    outputs = ("slowk", "slowd")
    _children = ("highest", "lowest", "slowk", "slowd")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        period = params["fastk_period"]
        self.highest = RollingExtreme(period, highest=True)
        self.lowest = RollingExtreme(period, highest=False)
        self.slowk = moving_average(params["slowk_matype"], params["slowk_period"], "params.slowk_matype")
        self.slowd = moving_average(params["slowd_matype"], params["slowd_period"], "params.slowd_matype")

    def update(self, open_: float, high: float, low: float, close: float, volume: float) -> Outputs:
        highest = self.highest.update(high)
        lowest = self.lowest.update(low)
        if not self.highest.full:
            return (None, None)
        span = highest - lowest
        fastk = (close - lowest) / (span / 100.0) if not is_zero_scaled(span, abs(highest) + abs(lowest)) else 0.0
        slowk = self.slowk.update(fastk)
        if slowk is None:
            return (None, None)
        slowd = self.slowd.update(slowk)
        if slowd is None:
            return (None, None)
        return (slowk, slowd)


class ADX(Indicator):
    """``ta_ADX.c``: Wilder's +DM/-DM/TR sums over ``timeperiod - 1`` bars, then smoothed; the
    first ADX is the mean of ``timeperiod`` DX values, then Wilder's smoothing."""

    name = "ADX"
    _fields = ("count", "prev_high", "prev_low", "prev_close", "minus_dm", "plus_dm", "tr", "sum_dx", "adx")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.period: int = params["timeperiod"]
        self.count = 0
        self.prev_high = 0.0
        self.prev_low = 0.0
        self.prev_close = 0.0
        self.minus_dm = 0.0
        self.plus_dm = 0.0
        self.tr = 0.0
        self.sum_dx = 0.0
        self.adx = 0.0

    def update(self, open_: float, high: float, low: float, close: float, volume: float) -> Outputs:
        count, period = self.count, self.period
        self.count = count + 1
        if count == 0:
            self.prev_high, self.prev_low, self.prev_close = high, low, close
            return _NONE1
        diff_p = high - self.prev_high
        self.prev_high = high
        diff_m = self.prev_low - low
        self.prev_low = low
        if count >= period:  # Wilder's smoothing once the first sums are complete
            self.minus_dm -= self.minus_dm / period
            self.plus_dm -= self.plus_dm / period
        if diff_m > 0 and diff_p < diff_m:
            self.minus_dm += diff_m
        elif diff_p > 0 and diff_p > diff_m:
            self.plus_dm += diff_p
        tr = true_range(high, low, self.prev_close)
        self.prev_close = close
        if count < period:
            self.tr += tr
            return _NONE1
        self.tr = self.tr - (self.tr / period) + tr
        dx: float | None = None
        if not is_zero(self.tr):
            minus_di = 100.0 * (self.minus_dm / self.tr)
            plus_di = 100.0 * (self.plus_dm / self.tr)
            total = minus_di + plus_di
            if not is_zero(total):
                dx = 100.0 * (abs(minus_di - plus_di) / total)
        if count < 2 * period - 1:  # still summing the first DX values
            if dx is not None:
                self.sum_dx += dx
            return _NONE1
        if count == 2 * period - 1:
            if dx is not None:
                self.sum_dx += dx
            self.adx = self.sum_dx / period
        elif dx is not None:
            self.adx = ((self.adx * (period - 1)) + dx) / period
        return (self.adx,)


class CCI(Indicator):
    """``ta_CCI.c``: typical prices in a circular buffer (summed slot by slot as TA-Lib does);
    (tp - mean) / (0.015 * mean deviation), 0 when either is exactly 0."""

    name = "CCI"
    _fields = ("count", "buffer")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.period: int = params["timeperiod"]
        self.count = 0
        self.buffer = [0.0] * self.period

    def update(self, open_: float, high: float, low: float, close: float, volume: float) -> Outputs:
        period, buffer = self.period, self.buffer
        last = (high + low + close) / 3
        buffer[self.count % period] = last
        self.count += 1
        if self.count < period:
            return _NONE1
        average = 0.0
        for value in buffer:
            average += value
        average /= period
        deviation = 0.0
        for value in buffer:
            deviation += abs(value - average)
        deviation /= period
        diff = last - average
        # TA-Lib 0.8 (issue #253): "flat" relative to the window's own price level.
        scale = abs(average)
        if not is_zero_scaled(diff, scale) and not is_zero_scaled(deviation, scale):
            return (diff / (0.015 * deviation),)
        return (0.0,)


class OBV(Indicator):
    """``ta_OBV.c``: starts at the first bar's volume; adds or subtracts each volume by the close's move."""

    name = "OBV"
    _fields = ("prev_obv", "prev_real")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.prev_obv: float | None = None
        self.prev_real = 0.0

    def update(self, open_: float, high: float, low: float, close: float, volume: float) -> Outputs:
        if self.prev_obv is None:
            self.prev_obv = volume
        elif close > self.prev_real:
            self.prev_obv += volume
        elif close < self.prev_real:
            self.prev_obv -= volume
        self.prev_real = close
        return (self.prev_obv,)


class MFI(Indicator):
    """``ta_MFI.c``: positive and negative money flow (typical price x volume) over ``timeperiod``
    moves of the typical price, in a circular buffer. As in TA-Lib 0.8, a move within the scaled
    epsilon is no move, and a window without flow of one sign counts that side as exactly 0 (the
    running sum keeps float residue after its last flow left); no flow at all gives 0."""

    name = "MFI"
    _fields = ("prev_tp", "count", "index", "positive", "negative", "pos_sum", "neg_sum", "pos_n", "neg_n")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.period: int = params["timeperiod"]
        self.pos_n = 0  # slots of the window holding a non-zero flow of each sign
        self.neg_n = 0
        self.prev_tp: float | None = None
        self.count = 0
        self.index = 0
        self.positive = [0.0] * self.period
        self.negative = [0.0] * self.period
        self.pos_sum = 0.0
        self.neg_sum = 0.0

    def update(self, open_: float, high: float, low: float, close: float, volume: float) -> Outputs:
        tp = (high + low + close) / 3.0
        prev_tp = self.prev_tp
        self.prev_tp = tp
        if prev_tp is None:
            return _NONE1
        i = self.index
        positive, negative = self.positive, self.negative
        if self.count >= self.period:
            self.pos_sum -= positive[i]
            self.neg_sum -= negative[i]
            self.pos_n -= positive[i] != 0.0
            self.neg_n -= negative[i] != 0.0
        else:
            self.count += 1
        diff = tp - prev_tp
        flow = tp * volume
        positive[i] = negative[i] = 0.0
        if not is_zero_scaled(diff, abs(tp) + abs(prev_tp)):
            if diff < 0:
                negative[i] = flow
                self.neg_sum += flow
                self.neg_n += flow != 0.0
            else:
                positive[i] = flow
                self.pos_sum += flow
                self.pos_n += flow != 0.0
        self.index = (i + 1) % self.period
        if self.count < self.period:
            return _NONE1
        pos = self.pos_sum if self.pos_n else 0.0
        neg = self.neg_sum if self.neg_n else 0.0
        total = pos + neg
        return (0.0 if total <= 0.0 else 100.0 * (pos / total),)


class WILLR(Indicator):
    """``ta_WILLR.c``: (highest - close) / ((highest - lowest) / -100) over ``timeperiod``; 0 on a flat range."""

    name = "WILLR"
    _children = ("highest", "lowest")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.highest = RollingExtreme(params["timeperiod"], highest=True)
        self.lowest = RollingExtreme(params["timeperiod"], highest=False)

    def update(self, open_: float, high: float, low: float, close: float, volume: float) -> Outputs:
        highest = self.highest.update(high)
        lowest = self.lowest.update(low)
        if not self.highest.full:
            return _NONE1
        span = highest - lowest
        if is_zero_scaled(span, abs(highest) + abs(lowest)):
            return (0.0,)
        return ((highest - close) / (span / (-100.0)),)


class ROC(Indicator):
    """``ta_ROC.c``: ((close / close ``timeperiod`` bars ago) - 1) * 100; 0 when that close is 0."""

    name = "ROC"
    _fields = ("window",)

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.size: int = params["timeperiod"] + 1
        self.window: deque[float] = deque(maxlen=self.size)

    def update(self, open_: float, high: float, low: float, close: float, volume: float) -> Outputs:
        window = self.window
        window.append(close)
        if len(window) < self.size:
            return _NONE1
        before = window[0]
        return (((close / before) - 1.0) * 100.0 if before != 0.0 else 0.0,)
