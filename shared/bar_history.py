"""Historical bars: the body of ``POST /api/v1/ingest/bars`` and the rules every bar must meet.

History (a terminal's ``copy_rates_range``, an MT5 bar export) reaches the store through
data-bridge, which checks it with ``check_bars``; database-service stores it with the same
model. ``hats import-bars`` checks a file with the same rules before it sends anything, so
what it refuses locally is exactly what the server would refuse.

A batch is one series (symbol, timeframe); each bar is MT5's rates row (``time`` = open time
in Unix seconds, ``tick_volume``, ``real_volume``; ``spread`` is accepted and not kept). A
request is all or nothing: every refused row is named (index and field) and none is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from shared.events import MarketBar, Price, QuantitySum, Symbol, Timeframe, bar_event_id

__all__ = [
    "DEFAULT_MAX_BARS_PER_REQUEST",
    "BarBatch",
    "BarError",
    "HistoricalBar",
    "ImportResult",
    "check_bars",
    "market_bars",
    "problem_errors",
]

#: Bars one request may carry (data-bridge's ``DATA_BRIDGE_MAX_BARS_PER_REQUEST`` default).
DEFAULT_MAX_BARS_PER_REQUEST = 10_000


class HistoricalBar(BaseModel):
    """One closed bar as MT5's ``copy_rates_*`` gives it (prices as decimals, never floats)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time: Annotated[int, Field(ge=0, description="open time, Unix seconds (UTC), aligned to the timeframe")]
    open: Price
    high: Price
    low: Price
    close: Price
    tick_volume: Annotated[int, Field(ge=0, description="ticks in the bar (MarketBar.volume)")] = 0
    real_volume: QuantitySum = Decimal(0)
    #: The spread of the bar's first tick, in points: MT5 reports it; the store does not keep it.
    spread: int | None = None


class BarBatch(BaseModel):
    """Request body of ``POST /api/v1/ingest/bars``: bars of one series, any order."""

    model_config = ConfigDict(extra="forbid")

    symbol: Symbol
    timeframe: Timeframe
    bars: list[HistoricalBar]


class ImportResult(BaseModel):
    """What an import did: bars stored now, and bars whose (symbol, timeframe, open time) was stored already."""

    inserted: int
    already_stored: int


@dataclass(frozen=True, slots=True)
class BarError:
    """Why one row is refused: its index in ``bars``, the field, and a sentence."""

    row: int
    field: str
    msg: str

    def as_problem_item(self) -> dict[str, Any]:
        """The row's entry in the problem's ``errors`` (the shape FastAPI's own 422s use, plus row and field)."""
        return {"loc": ["body", "bars", self.row, self.field], "row": self.row, "field": self.field, "msg": self.msg}


def check_bars(
    batch: BarBatch,
    *,
    now_s: float,
    max_future_s: float = 60.0,
    symbols: frozenset[str] | None = None,
) -> list[BarError]:
    """Every rule a well-typed batch can still break, one error per refused row (the first rule it breaks).

    * the symbol is in ``symbols`` (``None``: any): an error of the batch, row ``-1``;
    * ``low <= open, close <= high``;
    * the open time is a multiple of the timeframe (bars are aligned to the epoch in UTC);
    * the bar has closed: its end is not after ``now_s + max_future_s`` (a forming bar stored
      now would stay partial for good, since history never replaces a stored bar);
    * no open time twice in one batch.
    """
    errors: list[BarError] = []
    if symbols is not None and batch.symbol not in symbols:
        errors.append(BarError(-1, "symbol", f"symbol {batch.symbol!r} is not in the configured universe"))
    step = batch.timeframe.seconds
    latest_end = now_s + max_future_s
    seen: dict[int, int] = {}
    for index, bar in enumerate(batch.bars):
        error = _check_bar(bar, step, latest_end)
        if error is None and bar.time in seen:
            error = ("time", f"open time {bar.time} repeats row {seen[bar.time]}")
        if error is not None:
            errors.append(BarError(index, *error))
        seen.setdefault(bar.time, index)
    return errors


def _check_bar(bar: HistoricalBar, step: int, latest_end: float) -> tuple[str, str] | None:
    if bar.high < bar.low:
        return "high", f"high {bar.high} is below low {bar.low}"
    if not bar.low <= bar.open <= bar.high:
        return "open", f"open {bar.open} is outside [low {bar.low}, high {bar.high}]"
    if not bar.low <= bar.close <= bar.high:
        return "close", f"close {bar.close} is outside [low {bar.low}, high {bar.high}]"
    if bar.time % step:
        return "time", f"open time {bar.time} is not a multiple of the timeframe ({step} s)"
    if bar.time + step > latest_end:
        return (
            "time",
            f"the bar opening at {bar.time} has not closed yet (ends {bar.time + step}, now {latest_end:.0f})",
        )
    return None


def problem_errors(errors: list[BarError]) -> tuple[str, list[dict[str, Any]]]:
    """The 422's ``detail`` (naming the first refused row and field) and its ``errors`` member."""
    first = errors[0]
    where = first.field if first.row < 0 else f"bars[{first.row}].{first.field}"
    more = f" (and {len(errors) - 1} more rows)" if len(errors) > 1 else ""
    items = [
        {"loc": ["body", e.field], "field": e.field, "msg": e.msg} if e.row < 0 else e.as_problem_item() for e in errors
    ]
    return f"{where}: {first.msg}{more}", items


def market_bars(batch: BarBatch, ts_init: int) -> list[MarketBar]:
    """The batch's bars as ``MarketBar`` events: the same deterministic ids a live bar of that
    (symbol, timeframe, open time) has, so every reader sees one fact under one id."""
    timeframe = batch.timeframe
    return [
        MarketBar(
            event_id=bar_event_id(batch.symbol, timeframe, bar.time * 1_000_000_000),
            ts_event=bar.time * 1_000_000_000,
            ts_init=ts_init,
            symbol=batch.symbol,
            timeframe=timeframe,
            open=bar.open,
            high=bar.high,
            low=bar.low,
            close=bar.close,
            volume=bar.tick_volume,
            real_volume=bar.real_volume,
        )
        for bar in batch.bars
    ]
