"""The indicator specs (TA-Lib's names, parameters, defaults, ranges, outputs, lookbacks), the
factory, and the batch path ``compute``, which runs the streaming objects over the rows."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.indicators import library
from shared.indicators.blocks import TA_MA_TYPE_NAMES, IndicatorError
from shared.indicators.library import Indicator, Params

#: TA-Lib's upper bound of every period parameter.
MAX_PERIOD = 100_000
#: TA-Lib's bound of the band multipliers (``TA_REAL_MIN``/``TA_REAL_MAX``).
MAX_REAL = 3.0e37


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: TA-Lib's name, default and inclusive range; ``period`` marks a window length."""

    name: str
    default: int | float
    minimum: int | float
    maximum: int | float
    kind: type = int
    period: bool = True

    def check(self, value: object) -> int | float:
        field = f"params.{self.name}"
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
                raise IndicatorError(field, "must be an integer")
            value = int(value)
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise IndicatorError(field, "must be a finite number")
            value = float(value)
        if not self.minimum <= value <= self.maximum:
            raise IndicatorError(field, f"must be between {self.minimum} and {self.maximum}, not {value}")
        return value


@dataclass(frozen=True)
class IndicatorSpec:
    """What an indicator is called, takes and gives, and how many bars it needs before its first value."""

    name: str
    params: tuple[ParamSpec, ...]
    outputs: tuple[str, ...]
    #: Bars before the first value (TA-Lib's ``TA_<NAME>_Lookback``), from complete params.
    lookback: Callable[[Params], int]
    factory: Callable[[Params], Indicator]

    def resolve(self, given: Mapping[str, object] | None) -> Params:
        """``given`` checked against the specs, with TA-Lib's defaults for what is missing."""
        given = dict(given or {})
        known = {p.name for p in self.params}
        for name in given:
            if name not in known:
                raise IndicatorError(
                    f"params.{name}", f"{self.name} has no parameter {name!r} (it takes: {', '.join(sorted(known))})"
                )
        return {p.name: p.check(given[p.name]) if p.name in given else p.default for p in self.params}

    def periods(self, params: Params) -> dict[str, int]:
        return {p.name: int(params[p.name]) for p in self.params if p.period}


def _period(name: str, default: int, minimum: int = 2) -> ParamSpec:
    return ParamSpec(name, default, minimum, MAX_PERIOD)


def _matype(name: str) -> ParamSpec:
    return ParamSpec(name, 0, 0, len(TA_MA_TYPE_NAMES) - 1, period=False)


def _dev(name: str) -> ParamSpec:
    return ParamSpec(name, 2.0, -MAX_REAL, MAX_REAL, kind=float, period=False)


def _ma_lookback(period: int) -> int:
    return period - 1  # SMA, EMA, WMA (and a period of 1: none)


def _macd_lookback(p: Params) -> int:
    return int(max(p["fastperiod"], p["slowperiod"])) - 1 + int(p["signalperiod"]) - 1


_SPECS = (
    IndicatorSpec("SMA", (_period("timeperiod", 30),), ("real",), lambda p: p["timeperiod"] - 1, library.SMA),
    IndicatorSpec("EMA", (_period("timeperiod", 30),), ("real",), lambda p: p["timeperiod"] - 1, library.EMA),
    IndicatorSpec("WMA", (_period("timeperiod", 30),), ("real",), lambda p: p["timeperiod"] - 1, library.WMA),
    IndicatorSpec("RSI", (_period("timeperiod", 14),), ("real",), lambda p: p["timeperiod"], library.RSI),
    IndicatorSpec(
        "MACD",
        (_period("fastperiod", 12), _period("slowperiod", 26), _period("signalperiod", 9, 1)),
        ("macd", "macdsignal", "macdhist"),
        _macd_lookback,
        library.MACD,
    ),
    IndicatorSpec(
        "BBANDS",
        (_period("timeperiod", 20), _dev("nbdevup"), _dev("nbdevdn"), _matype("matype")),
        ("upperband", "middleband", "lowerband"),
        lambda p: p["timeperiod"] - 1,
        library.BBANDS,
    ),
    IndicatorSpec("ATR", (_period("timeperiod", 14, 1),), ("real",), lambda p: p["timeperiod"], library.ATR),
    IndicatorSpec("NATR", (_period("timeperiod", 14, 1),), ("real",), lambda p: p["timeperiod"], library.NATR),
    IndicatorSpec(
        "STOCH",
        (
            _period("fastk_period", 5, 1),
            _period("slowk_period", 3, 1),
            _matype("slowk_matype"),
            _period("slowd_period", 3, 1),
            _matype("slowd_matype"),
        ),
        ("slowk", "slowd"),
        lambda p: p["fastk_period"] - 1 + _ma_lookback(p["slowk_period"]) + _ma_lookback(p["slowd_period"]),
        library.STOCH,
    ),
    IndicatorSpec("ADX", (_period("timeperiod", 14),), ("real",), lambda p: 2 * p["timeperiod"] - 1, library.ADX),
    IndicatorSpec("CCI", (_period("timeperiod", 14),), ("real",), lambda p: p["timeperiod"] - 1, library.CCI),
    IndicatorSpec("OBV", (), ("real",), lambda p: 0, library.OBV),
    IndicatorSpec("MFI", (_period("timeperiod", 14),), ("real",), lambda p: p["timeperiod"], library.MFI),
    IndicatorSpec("WILLR", (_period("timeperiod", 14),), ("real",), lambda p: p["timeperiod"] - 1, library.WILLR),
    IndicatorSpec("ROC", (_period("timeperiod", 10, 1),), ("real",), lambda p: p["timeperiod"], library.ROC),
)

#: Every indicator by its TA-Lib name.
INDICATORS: dict[str, IndicatorSpec] = {spec.name: spec for spec in _SPECS}


def spec_of(name: str, field: str = "name") -> IndicatorSpec:
    try:
        return INDICATORS[name]
    except KeyError:
        raise IndicatorError(field, f"unknown indicator {name!r} (known: {', '.join(INDICATORS)})") from None


def create(name: str, params: Mapping[str, object] | None = None) -> Indicator:
    """A fresh streaming indicator; omitted params take TA-Lib's defaults.

    Raises ``IndicatorError`` naming the field for an unknown name or parameter, a value out of
    TA-Lib's range, or an MA type this library does not compute.
    """
    spec = spec_of(name)
    return spec.factory(spec.resolve(params))


def from_state(state: dict[str, Any]) -> Indicator:
    """The indicator an ``Indicator.state()`` describes, ready for the next bar."""
    return Indicator.from_state(state)


def compute(
    name: str,
    params: Mapping[str, object] | None,
    open_: Iterable[float],
    high: Iterable[float],
    low: Iterable[float],
    close: Iterable[float],
    volume: Iterable[float],
) -> dict[str, list[float | None]]:
    """The batch path: one list per output, as long as the input, ``None`` where TA-Lib gives NaN.

    It runs the same streaming object over the rows, so its values are the live path's by
    construction. Inputs are taken as they are (``shared.indicators.validate_rows`` checks them).
    """
    indicator = create(name, params)
    columns: list[list[float | None]] = [[] for _ in indicator.outputs]
    update = indicator.update
    appends = [column.append for column in columns]
    for row in zip(open_, high, low, close, volume, strict=True):
        for append, value in zip(appends, update(*row), strict=True):
            append(value)
    return dict(zip(indicator.outputs, columns, strict=True))
