"""The feature sets: which features a ``FeatureVector`` carries, in which order, and the one
streaming state that computes them, shared by the live service and training.

>>> fs = FeatureSet.core()          # "core-1"
>>> state = fs.new_state()
>>> values = state.update(bar)      # an ordered dict: fs.names -> float | None
>>> saved = state.state()           # JSON-serialisable; fs.restore(saved) continues it

``core-1``: the TA-Lib indicators with TA-Lib's default parameters (and a few extra periods),
named ``<indicator>_<period>`` or ``<indicator>_<output>`` in lower case; rolling log returns of
the close over 1, 5 and 20 bars; realised volatility over 20 bars (the square root of the sum of
squared 1-bar log returns); time of day and day of week of the bar's open (UTC) as sin/cos on
their circles; and the close. A value is ``None`` until its own warm-up is complete. Every value
depends on this bar and earlier ones only.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from shared.indicators import Indicator, create, spec_of

_DAY_NS = 86_400 * 1_000_000_000
_TAU = 2.0 * math.pi


class BarLike(Protocol):
    """What a feature state needs of a bar: ``shared.events.MarketBar`` or a ``Bar``."""

    @property
    def ts_event(self) -> int: ...  # the bar's open time, ns since the epoch, UTC
    @property
    def open(self) -> Decimal | float: ...
    @property
    def high(self) -> Decimal | float: ...
    @property
    def low(self) -> Decimal | float: ...
    @property
    def close(self) -> Decimal | float: ...
    @property
    def volume(self) -> int | float: ...


class Bar(NamedTuple):
    """A light bar record (training reads bars from storage without building events)."""

    ts_event: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True)
class IndicatorFeature:
    """One indicator of a feature set, and the feature name of each of its outputs."""

    indicator: str
    params: dict[str, Any]
    names: tuple[str, ...]


def _indicator(name: str, params: dict[str, Any] | None = None) -> IndicatorFeature:
    spec = spec_of(name)
    full = spec.resolve(params)
    lower = name.lower()
    if len(spec.outputs) > 1:
        names = tuple(f"{lower}_{output}" for output in spec.outputs)
    elif "timeperiod" in full:
        names = (f"{lower}_{full['timeperiod']}",)
    else:
        names = (lower,)
    return IndicatorFeature(name, full, names)


_CORE_1 = (
    _indicator("SMA", {"timeperiod": 20}),
    _indicator("SMA"),
    _indicator("EMA", {"timeperiod": 12}),
    _indicator("EMA"),
    _indicator("EMA", {"timeperiod": 50}),
    _indicator("WMA"),
    _indicator("RSI"),
    _indicator("MACD"),
    _indicator("BBANDS"),
    _indicator("ATR"),
    _indicator("NATR"),
    _indicator("STOCH"),
    _indicator("ADX"),
    _indicator("CCI"),
    _indicator("OBV"),
    _indicator("MFI"),
    _indicator("WILLR"),
    _indicator("ROC"),
)
#: Indicators whose values do not depend on the price level or on a cumulative total (oscillators,
#: percentages), so their distribution can be compared across time: the features drift is judged
#: on. Price-level features (close, moving averages, bands, ATR, MACD, in price units), OBV (a
#: running total) and the calendar features (a day's window covers a slice of the week by
#: construction) would read as drifted from any training window.
_SCALE_FREE = frozenset({"RSI", "NATR", "STOCH", "ADX", "CCI", "MFI", "WILLR", "ROC"})
_RETURN_PERIODS = (1, 5, 20)
_VOLATILITY_PERIOD = 20
_TIME_FEATURES = ("tod_sin", "tod_cos", "dow_sin", "dow_cos")


class FeatureSet:
    """An ordered list of features and how to compute them; ``FeatureSet.core()`` is ``core-1``."""

    def __init__(self, name: str, indicators: tuple[IndicatorFeature, ...]) -> None:
        self.name = name
        self.indicators = indicators
        self.names: tuple[str, ...] = (
            "close",
            *(n for feature in indicators for n in feature.names),
            *(f"logret_{k}" for k in _RETURN_PERIODS),
            f"rvol_{_VOLATILITY_PERIOD}",
            *_TIME_FEATURES,
        )
        #: The features whose drift from a model's training distribution means something (``_SCALE_FREE``
        #: indicators, returns, realised volatility), in the set's order.
        self.drift_monitored: tuple[str, ...] = (
            *(n for feature in indicators if feature.indicator in _SCALE_FREE for n in feature.names),
            *(f"logret_{k}" for k in _RETURN_PERIODS),
            f"rvol_{_VOLATILITY_PERIOD}",
        )
        #: Bars until every feature has a value (the longest indicator lookback, or the returns').
        self.warmup_bars = 1 + max(
            max(spec_of(f.indicator).lookback(f.params) for f in indicators),
            max(_RETURN_PERIODS),
            _VOLATILITY_PERIOD,
        )

    @classmethod
    def core(cls) -> FeatureSet:
        return cls("core-1", _CORE_1)

    def new_state(self) -> FeatureSetState:
        """A state that has seen no bar: every feature but the bar's own is ``None`` at first."""
        return FeatureSetState(self, [create(f.indicator, f.params) for f in self.indicators])

    def restore(self, saved: dict[str, Any]) -> FeatureSetState:
        """The state ``FeatureSetState.state()`` saved; refuses another feature set's."""
        if saved.get("feature_set") != self.name:
            raise ValueError(f"state of feature set {saved.get('feature_set')!r}, not {self.name!r}")
        state = FeatureSetState(self, [Indicator.from_state(s) for s in saved["indicators"]])
        state.closes.extend(saved["closes"])
        state.returns.extend(saved["returns"])
        state.bars = saved["bars"]
        return state


@functools.cache
def drift_monitored(feature_set: str) -> frozenset[str] | None:
    """The features of the named feature set that drift is judged on; ``None`` for a set this
    platform does not know (then every feature counts)."""
    known = {fs.name: fs for fs in (FeatureSet.core(),)}
    found = known.get(feature_set)
    return None if found is None else frozenset(found.drift_monitored)


class FeatureSetState:
    """The features of one series (one symbol and timeframe), one closed bar at a time."""

    def __init__(self, feature_set: FeatureSet, indicators: list[Indicator]) -> None:
        self.feature_set = feature_set
        self.indicators = indicators
        self.closes: deque[float] = deque(maxlen=max(_RETURN_PERIODS) + 1)
        self.returns: deque[float | None] = deque(maxlen=_VOLATILITY_PERIOD)
        self.bars = 0

    def update(self, bar: BarLike) -> dict[str, float | None]:
        """Take the next closed bar of the series; return its features in the set's order."""
        o, h, low, c = float(bar.open), float(bar.high), float(bar.low), float(bar.close)
        v = float(bar.volume)
        values: list[float | None] = [c]
        for indicator in self.indicators:
            values.extend(indicator.update(o, h, low, c, v))
        closes = self.closes
        closes.append(c)
        self.bars += 1
        for k in _RETURN_PERIODS:
            values.append(_log_return(c, closes[-1 - k]) if len(closes) > k else None)
        self.returns.append(values[-len(_RETURN_PERIODS)])  # the 1-bar return
        values.append(_realised_volatility(self.returns))
        values.extend(_time_features(bar.ts_event))
        # A non-finite value (an overflow on absurd input) is missing, like a cold one: a vector
        # must never carry NaN or infinity.
        return {
            name: value if value is None or math.isfinite(value) else None
            for name, value in zip(self.feature_set.names, values, strict=True)
        }

    def state(self) -> dict[str, Any]:
        """JSON-serialisable; ``FeatureSet.restore`` continues from it."""
        return {
            "feature_set": self.feature_set.name,
            "indicators": [indicator.state() for indicator in self.indicators],
            "closes": list(self.closes),
            "returns": list(self.returns),
            "bars": self.bars,
        }


def _log_return(now: float, before: float) -> float | None:
    return math.log(now / before) if now > 0.0 and before > 0.0 else None


def _realised_volatility(returns: deque[float | None]) -> float | None:
    """sqrt(sum of squared 1-bar log returns) over the window; None until the window is full of returns."""
    if len(returns) < _VOLATILITY_PERIOD:
        return None
    total = 0.0
    for r in returns:
        if r is None:
            return None
        total += r * r
    return math.sqrt(total)


def _time_features(open_ns: int) -> tuple[float, float, float, float]:
    day, in_day = divmod(open_ns, _DAY_NS)
    tod = _TAU * in_day / _DAY_NS
    dow = _TAU * ((day + 3) % 7) / 7.0  # 1970-01-01 was a Thursday: Monday = 0
    return (math.sin(tod), math.cos(tod), math.sin(dow), math.cos(dow))
