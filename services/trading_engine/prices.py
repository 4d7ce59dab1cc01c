"""Last prices per symbol: what a market order's reservation is priced at."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol


class PriceSource(Protocol):
    def last_price(self, symbol: str) -> Decimal | None:
        """The latest known price of ``symbol`` (``None`` if none is known yet)."""
        ...


class LastPrices:
    """The latest price seen per symbol (the service feeds it the closes of the bars on the bus)."""

    def __init__(self) -> None:
        self._prices: dict[str, tuple[int, Decimal]] = {}

    def update(self, symbol: str, ts_ns: int, price: Decimal) -> None:
        """Remember ``price`` unless a later one is known (bars of several timeframes interleave)."""
        known = self._prices.get(symbol)
        if known is None or ts_ns >= known[0]:
            self._prices[symbol] = (ts_ns, price)

    def last_price(self, symbol: str) -> Decimal | None:
        known = self._prices.get(symbol)
        return None if known is None else known[1]
