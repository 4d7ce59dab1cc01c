"""Duplicate-order detection: the same order terms from one account again within a window.

Two orders are the same when account, symbol, side, quantity, type and prices are equal
(quantities and prices compared as numbers: ``1.0`` = ``1.00``). The client order id is not part
of it: a resent client order id is the order manager's idempotency, not a duplicate; this catches
a strategy or a person sending the same order twice under two ids.
"""

from __future__ import annotations

from collections import OrderedDict
from decimal import Decimal

from services.trading_engine.risk.context import RiskOrder

NS = 1_000_000_000
Fingerprint = tuple[str, str, str, str, Decimal, str, Decimal | None, Decimal | None]


def fingerprint(order: RiskOrder) -> Fingerprint:
    def norm(value: Decimal | None) -> Decimal | None:
        return None if value is None else value.normalize()

    return (
        order.tenant,
        order.account_id,
        order.symbol,
        order.side,
        order.quantity.normalize(),
        order.type,
        norm(order.limit_price),
        norm(order.stop_price),
    )


class DuplicateDetector:
    """When each order's terms were last accepted, for as long as the longest window allows.

    Memory stays bounded: entries older than ``horizon_s`` (the longest window any limits may
    set) are dropped as newer ones arrive, and at most ``max_entries`` are kept.
    """

    def __init__(self, horizon_s: int = 3_600, max_entries: int = 200_000) -> None:
        self._horizon_ns = horizon_s * NS
        self._max = max_entries
        self._seen: OrderedDict[Fingerprint, int] = OrderedDict()

    def previous(self, order: RiskOrder, now_ns: int, window_s: int) -> int | None:
        """When the same order was last accepted, if within ``window_s`` before ``now_ns``."""
        at = self._seen.get(fingerprint(order))
        return at if at is not None and now_ns - at < window_s * NS else None

    def record(self, order: RiskOrder, now_ns: int) -> None:
        key = fingerprint(order)
        self._seen[key] = now_ns
        self._seen.move_to_end(key)
        seen = self._seen
        while seen and (len(seen) > self._max or now_ns - next(iter(seen.values())) >= self._horizon_ns):
            seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)


__all__ = ["DuplicateDetector", "fingerprint"]
