"""The paper venue's own costs on the embedded PostgreSQL (a fresh ``var``, its own server):

1. ``submit`` of a market order until its ``accepted`` report reached the sink (the venue's share
   of signal -> order acknowledged: one transaction storing the order and its report, then the
   delivery pass marking it delivered);
2. a tick that changes nothing, with ``--resting`` limit orders away from the market on its symbol
   (the price every tick pays);
3. a tick that fills one market order (deal, order progress, position, report, delivery).

    python -m bench.paper_venue [--orders 2000] [--resting 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

import asyncpg
import numpy as np

from infra import postgres
from services.trading_engine.service import SERVICE
from services.trading_engine.venues.base import VenueOrder, VenueReport
from services.trading_engine.venues.paper import PaperVenue, PaperVenueSettings
from shared.kit.migrations import migrate_postgres

T0 = 1_767_780_000_000_000_000  # Wednesday 2026-01-07 10:00 UTC: FX open


def _order(coid: str, type_: str = "market", limit: Decimal | None = None) -> VenueOrder:
    return VenueOrder(
        order_id=uuid.uuid4(),
        client_order_id=coid,
        account_id="bench",
        symbol="EURUSD",
        side="buy",
        type=type_,  # type: ignore[arg-type]
        quantity=Decimal("0.10"),
        time_in_force="gtc",
        limit_price=limit,
    )


def _ms(samples: list[int]) -> str:
    p50, p99, mx = np.percentile(np.array(samples) / 1e6, [50, 99, 100])
    return f"p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {mx:.3f} ms"


async def measure(url: str, orders: int, resting: int) -> None:
    await migrate_postgres(url, SERVICE.name, SERVICE.migrations_dir("postgres"))
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    now = [T0]
    arrived: dict[str, int] = {}

    async def sink(report: VenueReport) -> None:
        arrived[f"{report.client_order_id}/{report.kind}"] = time.perf_counter_ns()

    venue = PaperVenue(pool, PaperVenueSettings(commission_per_lot=Decimal(7)), lambda: now[0], sink)
    try:
        acks = []
        for i in range(orders):
            started = time.perf_counter_ns()
            await venue.submit(_order(f"m{i}"))
            acks.append(arrived[f"m{i}/accepted"] - started)
            now[0] += 1_000
            await venue.on_tick("EURUSD", Decimal("1.10000"), Decimal("1.10010"), now[0])  # fills it
        for i in range(resting):
            await venue.submit(_order(f"r{i}", "limit", Decimal("1.00000")))
        idle, fills = [], []
        for i in range(orders):
            now[0] += 1_000
            started = time.perf_counter_ns()
            await venue.on_tick("EURUSD", Decimal("1.10000"), Decimal("1.10010"), now[0])
            idle.append(time.perf_counter_ns() - started)
            await venue.submit(_order(f"f{i}"))
            now[0] += 1_000
            started = time.perf_counter_ns()
            await venue.on_tick("EURUSD", Decimal("1.10000"), Decimal("1.10010"), now[0])
            fills.append(arrived[f"f{i}/fill"] - started)
        print(f"   submit -> accepted report     {_ms(acks)}")
        print(f"   tick, nothing to do           {_ms(idle)}  ({resting} resting limits on the symbol)")
        print(f"   tick -> fill report           {_ms(fills)}  (one market order, {resting} resting)")
    finally:
        await pool.close()


def report(orders: int = 2000, resting: int = 200) -> None:
    print(
        f"== paper venue on the embedded PostgreSQL (unix socket): {orders} orders one at a time, "
        f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}), Python {platform.python_version()}"
    )
    var = Path(tempfile.mkdtemp(prefix="hats-bench-paper-"))
    var.chmod(0o755)  # the embedded server runs as its own user
    try:
        asyncio.run(measure(postgres.start_embedded(var), orders, resting))
    finally:
        postgres.stop_embedded(var)
        shutil.rmtree(var, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.paper_venue")
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--resting", type=int, default=200)
    args = parser.parse_args()
    report(args.orders, args.resting)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
