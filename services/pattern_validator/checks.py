"""The validator's findings about one signal, each a pure function of what it is given.

Each returns ``Finding``s: a ``Reason`` and whether it rejects (else it is a note). Which
findings reject depends on the signal's action (docs/intelligence.md has the table):

=====================  ===========  ===========  =========
finding                enter_*      exit_*       hold
=====================  ===========  ===========  =========
stale_data             reject       reject       reject
gappy_data             reject       note         note
duplicate              reject       reject       (not checked)
pattern_contradiction  reject       note         (not checked)
pattern_confirmation   note         note         (not checked)
regime_misfit          reject       (not checked) (not checked)
feature_drift          reject       note         note
=====================  ===========  ===========  =========

Exits are never blocked by a market reading (they reduce risk); a stale or duplicate exit is
still refused (it may be acting on a position that no longer exists).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import talib

from services.pattern_validator.inputs import Candle
from shared.events import Reason, Signal, Timeframe
from shared.market_hours import MarketHours


@dataclass(frozen=True)
class Finding:
    reason: Reason
    rejects: bool


def finding(code: str, detail: str, rejects: bool) -> Finding:
    return Finding(Reason(code=code, detail=detail[:500]), rejects)


def is_entry(signal: Signal) -> bool:
    return signal.action in ("enter_long", "enter_short")


# -- stale_data -----------------------------------------------------------------------------


def stale(signal: Signal, newest_bar: int | None, now_ns: int, stale_bars: int, max_delay_s: float) -> list[Finding]:
    tf = signal.timeframe.nanos
    out = []
    if newest_bar is not None and newest_bar - signal.ts_event > stale_bars * tf:
        behind = (newest_bar - signal.ts_event) // tf
        out.append(
            finding("stale_data", f"the signal's bar is {behind} bars behind the newest bar (> {stale_bars})", True)
        )
    delay_s = (now_ns - (signal.ts_event + tf)) / 1e9
    if delay_s > max_delay_s:
        out.append(finding("stale_data", f"arrived {delay_s:.1f} s after its bar closed (> {max_delay_s:g} s)", True))
    return out


# -- gappy_data -----------------------------------------------------------------------------


def missing_bars(
    symbol: str,
    timeframe: Timeframe,
    open_time: int,
    have: set[int],
    first_seen: int,
    window: int,
    calendar: MarketHours,
) -> list[int]:
    """Open times in the ``window`` bars ending at ``open_time`` that the market was open for and
    that have no bar (times before the first bar ever seen are not counted: that is before us)."""
    tf = timeframe.nanos
    out = []
    for i in range(window):
        t = open_time - i * tf
        if t < first_seen:
            break
        if t not in have and calendar.is_open(symbol, t):
            out.append(t)
    return out


def gappy(signal: Signal, missing: list[int], max_missing: int) -> list[Finding]:
    if len(missing) <= max_missing:
        return []
    return [
        finding("gappy_data", f"{len(missing)} bars missing in the recent window (> {max_missing})", is_entry(signal))
    ]


# -- candlestick patterns ----------------------------------------------------------------------

#: TA-Lib's candlestick functions read: +100 bullish, -100 bearish (CDLDOJI only ever +100: indecision).
PATTERNS = (
    "CDLENGULFING",
    "CDLHAMMER",
    "CDLINVERTEDHAMMER",
    "CDLSHOOTINGSTAR",
    "CDLHANGINGMAN",
    "CDLMORNINGSTAR",
    "CDLEVENINGSTAR",
    "CDLHARAMI",
)


def patterns_at_last(candles: list[Candle]) -> dict[str, int]:
    """Each pattern's TA-Lib value at the last candle (only the non-zero ones)."""
    if len(candles) < 3:
        return {}
    o = np.array([c.open for c in candles], dtype=float)
    h = np.array([c.high for c in candles], dtype=float)
    lo = np.array([c.low for c in candles], dtype=float)
    c = np.array([c.close for c in candles], dtype=float)
    found = {}
    for name in (*PATTERNS, "CDLDOJI"):
        value = int(getattr(talib, name)(o, h, lo, c)[-1])
        if value:
            found[name] = value
    return found


def patterns(signal: Signal, found: dict[str, int]) -> list[Finding]:
    if signal.action == "hold" or signal.direction == "flat":
        return []
    want = 1 if signal.direction == "long" else -1
    out = []
    against = sorted(n for n, v in found.items() if n != "CDLDOJI" and v * want < 0)
    backing = sorted(n for n, v in found.items() if n != "CDLDOJI" and v * want > 0)
    if against:
        out.append(
            finding(
                "pattern_contradiction", f"{', '.join(against)} against a {signal.direction} signal", is_entry(signal)
            )
        )
    if backing:
        out.append(finding("pattern_confirmation", f"{', '.join(backing)} confirm a {signal.direction} signal", False))
    if "CDLDOJI" in found:
        out.append(finding("pattern_indecision", "CDLDOJI on the signal's bar", False))
    return out


# -- regime ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegimeRules:
    adx_trend: float = 25.0
    adx_range: float = 20.0
    natr_high: float = 1.0
    strong_strength: float = 0.6
    range_min_strength: float = 0.3


def regime_of(adx: float | None, natr: float | None, rules: RegimeRules) -> str | None:
    """``high_volatility`` (NATR first), ``trend``, ``range``, ``transition``; ``None`` while warming up."""
    if natr is not None and natr >= rules.natr_high:
        return "high_volatility"
    if adx is None:
        return None
    if adx >= rules.adx_trend:
        return "trend"
    if adx < rules.adx_range:
        return "range"
    return "transition"


def regime(
    signal: Signal, adx: float | None, natr: float | None, trend_up: bool | None, rules: RegimeRules
) -> list[Finding]:
    """Regime misfits of an entry:

    * high volatility: an entry weaker than ``strong_strength``;
    * trend: an entry against the trend (the vector's close vs its average) weaker than ``strong_strength``;
    * range: an entry weaker than ``range_min_strength`` that the RSI (mean-reversion) member does
      not back: a weak trend-following bet in a market going nowhere;
    * transition: nothing.
    """
    if not is_entry(signal):
        return []
    kind = regime_of(adx, natr, rules)
    long = signal.action == "enter_long"
    if kind == "high_volatility" and signal.strength < rules.strong_strength:
        return [
            finding(
                "regime_misfit", f"high volatility (NATR {natr:.3g}) and a weak entry ({signal.strength:.2f})", True
            )
        ]
    if kind == "trend" and trend_up is not None and trend_up != long and signal.strength < rules.strong_strength:
        return [
            finding(
                "regime_misfit", f"trend (ADX {adx:.1f}) against the entry, which is weak ({signal.strength:.2f})", True
            )
        ]
    if kind == "range" and signal.strength < rules.range_min_strength:
        rsi_backs = any(c.model_id is None and c.score * (1 if long else -1) > 0 for c in signal.contributions)
        if not rsi_backs:
            return [
                finding("regime_misfit", f"range (ADX {adx:.1f}) and a weak entry the RSI rule does not back", True)
            ]
    return []


# -- feature drift --------------------------------------------------------------------------


def drift(signal: Signal, drifted: dict[str, list[str]], threshold: float) -> list[Finding]:
    """``drifted``: model label -> its features whose PSI is above ``threshold``."""
    if not drifted:
        return []
    detail = "; ".join(f"{model}: {', '.join(features)}" for model, features in sorted(drifted.items()))
    return [finding("feature_drift", f"PSI > {threshold:g}: {detail}", is_entry(signal))]
