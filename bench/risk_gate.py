"""Pre-trade risk gate time per order: ``RiskGate.evaluate`` with every check on, in this process.

Orders alternate symbols, sides, types and prices (none a duplicate, all accepted, so every check
runs to the end, the stateful ones included: the duplicate window and the message-rate window
fill up as they would live); the board holds tripped switches of other accounts, which each
order is checked against. ``python -m bench.risk_gate [orders]`` prints it (target < 1 ms).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from decimal import Decimal

from services.trading_engine.risk.context import AccountState, OpenLots, RiskContext, RiskOrder
from services.trading_engine.risk.gate import RiskGate
from services.trading_engine.risk.kill_switch import KillSwitchBoard, trip
from services.trading_engine.risk.limits import RiskLimits
from shared.events import OrderType
from shared.instruments import instrument

WEDNESDAY_NS = 1_767_787_200_000_000_000  # 2026-01-07T12:00:00Z: every session open
LIMITS = RiskLimits(
    price_collar_bps=500,
    max_order_value=Decimal(10_000_000),
    max_order_lots=Decimal(50),
    max_messages=1_000_000,  # on, but never reached by this run
    message_window_s=60,
    account_credit_limit=Decimal(1_000_000_000),
    tenant_credit_limit=Decimal(10_000_000_000),
    check_capital=True,
    max_position_lots=Decimal(1_000),
    max_symbol_exposure=Decimal(1_000_000_000),
    daily_loss_limit=Decimal(50_000),
    duplicate_window_s=60,
    restricted_symbols=["GBPUSD"],
    check_market_hours=True,
)
SYMBOLS = {"EURUSD": Decimal("1.10000"), "XAUUSD": Decimal("2650.00"), "BTCUSD": Decimal("90000.00")}


def orders(n: int) -> list[tuple[RiskOrder, RiskContext]]:
    account = AccountState(currency="USD", balance=Decimal(10_000_000), used_margin=Decimal(1000))
    out = []
    names = list(SYMBOLS)
    for i in range(n):
        symbol = names[i % len(names)]
        last = SYMBOLS[symbol]
        kind: OrderType = "limit" if i % 2 else "market"
        order = RiskOrder(
            tenant="bench",
            account_id=f"acc-{i % 50}",
            venue="paper",
            symbol=symbol,
            side="buy" if i % 4 < 2 else "sell",
            type=kind,
            quantity=Decimal("0.01") * (1 + (i // 50) % 1999),  # no two alike per account within the run
            limit_price=(last * (1 + Decimal(i % 7) / 1000)).quantize(last) if kind == "limit" else None,
            strategy="rsi",
        )
        ctx = RiskContext(
            now_ns=WEDNESDAY_NS + i * 1_000_000,
            limits=LIMITS,
            account=account,
            instrument=instrument(symbol),
            last_prices=SYMBOLS,
            positions={symbol: Decimal("0.5")},
            open_orders={symbol: OpenLots(Decimal("0.2"), Decimal("0.1"))},
        )
        out.append((order, ctx))
    return out


def gate_us(n: int = 20_000, clock=time.perf_counter_ns) -> list[float]:
    """Microseconds of ``evaluate`` per order on ``clock``; every order must be accepted."""
    board = KillSwitchBoard()
    for k in range(5):
        board.put(trip(scope="account", target=f"other-{k}", tenant="bench", actor="b", reason="b", now_ns=1))
    gate = RiskGate(board)
    timings = []
    for order, ctx in orders(n):
        started = clock()
        decision = gate.evaluate(order, ctx)
        timings.append((clock() - started) / 1000)
        if not decision.accepted:
            raise SystemExit(f"the bench's orders must all pass: {decision.rejections}")
    return timings


def report(n: int = 20_000) -> None:
    print("== pre-trade risk gate, per order (RiskGate.evaluate, every check on, all orders accepted)")
    print(
        f"   {n} orders over 3 symbols and 50 accounts, 5 tripped switches on the board, one thread of "
        f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}), "
        f"{platform.python_implementation()} {platform.python_version()}, no I/O (the context is given)"
    )
    for label, clock in (("wall", time.perf_counter_ns), ("CPU", time.thread_time_ns)):
        timings = sorted(gate_us(n, clock=clock))
        p50 = statistics.median(timings)
        p99 = timings[min(len(timings) - 1, int(0.99 * len(timings)))]
        print(f"   {label:>4}: p50 {p50:.1f} µs, p99 {p99:.1f} µs, max {timings[-1]:.1f} µs  (target < 1 ms)")


if __name__ == "__main__":
    report(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
    sys.exit(0)
