"""The order manager's own cost per order, in this process on the embedded PostgreSQL (a fresh ``var``):
``OrderManager.place`` of a market order with the risk gate on, on the paper venue, until it returns
(stored, checked, reserved, submitted, its ``accepted`` report applied), and the fill that follows on
the next tick. Counts the PostgreSQL round trips of each (``Connection.add_query_logger`` on every
connection of the pool), so a change that cuts statements shows as a number, not only as time.

    python -m bench.order_path [--orders 1000] [--accounts 4]

Orders rotate over ``--accounts`` accounts; positions and open orders accumulate as they would live
(every order fills on the tick after it), so the risk gate's context reads a growing book.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import platform
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import psutil

from infra import postgres
from services.trading_engine.balance import BalanceManager
from services.trading_engine.orders.manager import OrderManager
from services.trading_engine.orders.models import Order, OrderRequest
from services.trading_engine.prices import LastPrices
from services.trading_engine.risk.controls import RiskControls
from services.trading_engine.risk_wiring import RiskCheck, TripQueue
from services.trading_engine.service import OUTBOX_TABLE, SERVICE
from services.trading_engine.venues.base import VenueReport
from services.trading_engine.venues.paper import PaperVenue, PaperVenueSettings
from shared.events import Fill, OrderUpdated
from shared.kit.migrations import migrate_postgres
from shared.outbox import Outbox

T0 = 1_767_780_000_000_000_000  # Wednesday 2026-01-07 10:00 UTC: every session open
SYMBOL = "BTCUSD"
TENANT = "bench"


class NullPublisher:
    """The outbox's publisher without a broker: what this bench measures ends at the commit."""

    async def publish(self, events: Any) -> dict[int, int]:
        return {}

    async def publish_encoded(self, records: Any) -> dict[int, int]:
        return {}


class QueryCounter:
    """Statements run on the pool's connections, by their first words."""

    def __init__(self) -> None:
        self.total = 0
        self.kinds: collections.Counter[str] = collections.Counter()

    def __call__(self, record: Any) -> None:
        self.total += 1
        self.kinds[" ".join(record.query.split()[:4])[:60]] += 1


def _ms(samples: list[int]) -> str:
    p50, p99, mx = np.percentile(np.array(samples) / 1e6, [50, 99, 100])
    return f"p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {mx:.3f} ms"


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A pool ``reset`` that sends nothing (the default sends one statement per release)."""


def _postgres_cpu_s(var: Path) -> float:
    """CPU seconds (user + system) the embedded server's processes have used so far."""
    total = 0.0
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(var) in " ".join(proc.info["cmdline"] or ()):
            with contextlib.suppress(psutil.Error):
                for p in (proc, *proc.children(recursive=True)):
                    times = p.cpu_times()
                    total += times.user + times.system
    return total


async def measure(
    url: str, var: Path, orders: int, accounts: int, show_statements: bool, pool_reset: bool = True
) -> None:
    await migrate_postgres(url, SERVICE.name, SERVICE.migrations_dir("postgres"))
    counter = QueryCounter()

    async def init(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(counter)

    pool = await asyncpg.create_pool(
        url, min_size=2, max_size=4, init=init, **({} if pool_reset else {"reset": _keep_session})
    )
    now = [T0]
    clock = lambda: now[0]  # noqa: E731
    publishers = {event.TOPIC: NullPublisher() for event in (OrderUpdated, Fill)}
    outbox = Outbox(pool, OUTBOX_TABLE, publishers, grace_s=5)
    prices = LastPrices()
    controls = RiskControls()
    async with pool.acquire() as conn:
        await controls.load(conn)
        for i in range(accounts):
            await conn.execute(
                "INSERT INTO trading.accounts (id, tenant, venue, name, currency, balance)"
                " VALUES ($1, $2, 'paper', $1, 'USD', 1000000000)",
                f"bench-{i}",
                TENANT,
            )
    holder: dict[str, OrderManager] = {}

    async def sink(report: VenueReport) -> None:
        await holder["m"].on_report(report)

    venue = PaperVenue(pool, PaperVenueSettings(commission_per_lot=Decimal(7)), clock, sink)
    manager = OrderManager(
        pool,
        outbox,
        BalanceManager(Decimal(7)),
        {"paper": venue},
        prices,
        checks=(RiskCheck(controls, prices, TripQueue()),),
        clock=clock,
    )
    holder["m"] = manager
    delivery = asyncio.create_task(outbox.run_delivery())
    bid, ask = Decimal("90000.00"), Decimal("90010.00")
    prices.update(SYMBOL, now[0], (bid + ask) / 2)
    places, fills = [], []
    place_queries, fill_queries = [], []
    statements: collections.Counter[str] = collections.Counter()
    cpu_before, pg_before = time.process_time(), _postgres_cpu_s(var)
    try:
        for i in range(orders):
            # Alternate sides, so positions stay small and the limits never refuse the run.
            side = "buy" if i % 2 == 0 else "sell"
            request = OrderRequest(
                account_id=f"bench-{i % accounts}",
                symbol=SYMBOL,
                side=side,
                type="market",
                quantity=Decimal("0.01") * (1 + i % 7),  # no duplicates in the duplicate window
            )
            before, kinds_before = counter.total, counter.kinds.copy()
            started = time.perf_counter_ns()
            placed = await manager.place(request, tenant=TENANT, actor="bench")
            places.append(time.perf_counter_ns() - started)
            place_queries.append(counter.total - before)
            if i == orders // 2:
                statements = counter.kinds - kinds_before
            assert isinstance(placed, Order) and placed.state == "accepted", placed
            now[0] += 1_000_000_000  # one second later: the next tick may fill it
            before = counter.total
            started = time.perf_counter_ns()
            await venue.on_tick(SYMBOL, bid, ask, now[0])
            fills.append(time.perf_counter_ns() - started)
            fill_queries.append(counter.total - before)
        await outbox.drain()
        cpu, pg = time.process_time() - cpu_before, _postgres_cpu_s(var) - pg_before
    finally:
        delivery.cancel()
        await pool.close()
    print(
        f"   place (stored, risk-checked, reserved, submitted, accepted applied): {_ms(places)}; "
        f"{np.mean(place_queries):.1f} round trips per order"
    )
    print(
        f"   tick -> its fill applied (venue + engine: fill, position, balance, order): {_ms(fills)}; "
        f"{np.mean(fill_queries):.1f} round trips"
    )
    print(
        f"   CPU per order (place + its fill): this process {cpu / orders * 1e3:.2f} ms, PostgreSQL "
        f"{pg / orders * 1e3:.2f} ms (user + system; less sensitive to the machine's load than the times above)"
    )
    if show_statements:
        print("   statements of one place(), by their first words:")
        for kind, n in sorted(statements.items(), key=lambda kv: -kv[1]):
            print(f"     {n} x {kind}")


def report(orders: int = 1000, accounts: int = 4, show_statements: bool = False, pool_reset: bool = True) -> None:
    print(
        f"== order manager in this process on the embedded PostgreSQL (unix socket): {orders} market orders one at "
        f"a time over {accounts} accounts, risk gate on, paper venue; {os.cpu_count()} cores (load average "
        f"{os.getloadavg()[0]:.1f}), Python {platform.python_version()}"
        + ("" if pool_reset else "; the pool's reset statement on release off")
    )
    var = Path(tempfile.mkdtemp(prefix="hats-bench-orders-"))
    var.chmod(0o755)  # the embedded server runs as its own user
    try:
        asyncio.run(measure(postgres.start_embedded(var), var, orders, accounts, show_statements, pool_reset))
    finally:
        postgres.stop_embedded(var)
        shutil.rmtree(var, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.order_path")
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=4)
    parser.add_argument("--statements", action="store_true", help="list the statements of one place()")
    parser.add_argument(
        "--no-pool-reset", action="store_true", help="release connections without asyncpg's reset statement"
    )
    args = parser.parse_args()
    report(args.orders, args.accounts, args.statements, not args.no_pool_reset)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
