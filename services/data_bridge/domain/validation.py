"""Stateless validation of incoming ticks.

Stateless on purpose: several data-bridge instances may validate ticks of the
same symbol, so the verdict on a tick must depend only on the tick, the
configuration and the clock -- never on which instance saw which earlier tick.
Ordering concerns (late / duplicate ticks) belong to the bar builder, which
sees one symbol's stream in partition order.

Positivity, decimal format and symbol syntax are already enforced by the
pydantic models (``IngestTick``, ``MarketTick``); this module checks what a model cannot.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

__all__ = ["RejectReason", "Rejection", "TickValidator"]

_NS_PER_S = 1_000_000_000
#: 2000-01-01T00:00:00Z in ns: no terminal feed we take produces older ticks;
#: anything earlier is a zeroed or mis-scaled (s / ms instead of ns) timestamp.
DEFAULT_MIN_TS_NS = 946_684_800 * _NS_PER_S


class Quote(Protocol):
    """What the validator reads of a tick: ``MarketTick`` and data-bridge's ``IngestTick`` both fit."""

    @property
    def symbol(self) -> str: ...
    @property
    def bid(self) -> Decimal: ...
    @property
    def ask(self) -> Decimal: ...
    @property
    def ts_event(self) -> int: ...


class RejectReason(StrEnum):
    """Why a tick was rejected. The values are stable codes (metrics labels, DLQ headers)."""

    UNKNOWN_SYMBOL = "unknown_symbol"
    CROSSED_QUOTE = "crossed_quote"
    SPREAD_TOO_WIDE = "spread_too_wide"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A negative verdict: a stable ``reason`` code and a human-readable ``detail``."""

    reason: RejectReason
    detail: str


class TickValidator:
    """Checks one tick at a time; holds configuration only, no per-tick state.

    Checks run in a fixed order and the first failure is reported:
    unknown symbol, crossed quote, spread too wide, timestamp in the future,
    timestamp too old. A locked quote (``ask == bid``) is valid.
    """

    __slots__ = ("_max_future_ns", "_max_spread_ratio", "_min_ts_ns", "_symbols")

    def __init__(
        self,
        *,
        symbols: frozenset[str] | None = None,
        max_future_ns: int = 60 * _NS_PER_S,
        min_ts_ns: int = DEFAULT_MIN_TS_NS,
        max_spread_ratio: Decimal = Decimal("0.05"),
    ) -> None:
        """
        :param symbols: the tradable universe; ``None`` accepts any symbol.
        :param max_future_ns: how far ahead of ``now_ns`` a tick may be (terminal
            clocks drift; beyond this the timestamp is wrong, not early).
        :param min_ts_ns: ticks older than this are rejected as bogus timestamps.
        :param max_spread_ratio: largest accepted ``(ask - bid) / bid``.
        """
        if max_future_ns < 0:
            raise ValueError(f"max_future_ns must be >= 0, got {max_future_ns}")
        if max_spread_ratio < 0:
            raise ValueError(f"max_spread_ratio must be >= 0, got {max_spread_ratio}")
        self._symbols = symbols
        self._max_future_ns = max_future_ns
        self._min_ts_ns = min_ts_ns
        self._max_spread_ratio = Decimal(max_spread_ratio)

    def check(self, tick: Quote, now_ns: int) -> Rejection | None:
        """Return the first reason to reject ``tick`` at wall-clock ``now_ns``, or ``None`` if valid."""
        if self._symbols is not None and tick.symbol not in self._symbols:
            return Rejection(RejectReason.UNKNOWN_SYMBOL, f"symbol {tick.symbol!r} is not in the configured universe")
        bid, ask = tick.bid, tick.ask
        if ask < bid:
            return Rejection(RejectReason.CROSSED_QUOTE, f"{tick.symbol}: ask {ask} < bid {bid}")
        # Compare by multiplication rather than dividing: exact for the
        # decimal places the model allows, and no division per tick.
        spread = ask - bid
        if spread > self._max_spread_ratio * bid:
            return Rejection(
                RejectReason.SPREAD_TOO_WIDE,
                f"{tick.symbol}: spread {spread} (ask {ask} - bid {bid}) is "
                f"{spread / bid:.6f} of bid, above {self._max_spread_ratio}",
            )
        ts = tick.ts_event
        if ts > now_ns + self._max_future_ns:
            return Rejection(
                RejectReason.TIMESTAMP_IN_FUTURE,
                f"{tick.symbol}: ts_event {ts} is {ts - now_ns} ns after now {now_ns} "
                f"(allowed {self._max_future_ns} ns)",
            )
        if ts < self._min_ts_ns:
            return Rejection(
                RejectReason.TIMESTAMP_TOO_OLD, f"{tick.symbol}: ts_event {ts} is before the minimum {self._min_ts_ns}"
            )
        return None
