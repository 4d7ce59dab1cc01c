"""performance-analytics (8002): PnL, equity, risk/return metrics, per-model attribution."""

from __future__ import annotations

import time
from typing import Any

from services.performance_analytics import consumers
from services.performance_analytics.analytics import Analytics
from services.performance_analytics.routes import router
from services.performance_analytics.settings import PerformanceAnalyticsSettings
from services.performance_analytics.snapshots import Snapshots
from services.performance_analytics.state import PerformanceAnalytics
from services.performance_analytics.store import PerformanceStore
from shared.events import Fill, MarketTick, OrderUpdated, ValidatedSignal
from shared.kit.contract import Consumes, Contract
from shared.kit.deps import Bus, ClickHouse, TokenAuth
from shared.kit.service import Runtime, ServiceDefinition

CONTRACT = Contract(
    consumes=(
        Consumes(Fill, group=consumers.FILLS_GROUP, purpose="count every fill once: positions, PnL, trades"),
        Consumes(ValidatedSignal, group=consumers.SIGNALS_GROUP, purpose="model weights and confidence of trades"),
        Consumes(MarketTick, group=consumers.MARKS_GROUP, purpose="mark open positions at the latest quote"),
        Consumes(OrderUpdated, group=consumers.ORDERS_GROUP, purpose="count each account's orders by state"),
    ),
)


async def start(rt: Runtime[PerformanceAnalyticsSettings, PerformanceAnalytics]) -> PerformanceAnalytics:
    settings = rt.settings
    clock = rt.overrides.wall_clock or time.time
    store = PerformanceStore(rt.clickhouse)
    analytics = Analytics(settings.max_signals)
    await rebuild(analytics, store, settings, clock)
    consumers.subscribe(rt.bus, rt.registry, analytics, store, settings)
    snapshots = Snapshots(analytics, store, settings.capital_usd, settings.snapshot_interval_s, clock)
    rt.background("equity-snapshots", snapshots.run)
    return PerformanceAnalytics(settings, analytics, store, snapshots, clock)


async def rebuild(
    analytics: Analytics, store: PerformanceStore, settings: PerformanceAnalyticsSettings, clock: Any
) -> None:
    """The state a restart left, from storage: every fill replayed in the order it was counted,
    the recent signals, the last marks. The bus is read on from the committed offsets."""
    for signal in await store.signals(int((clock() - settings.signal_lookback_s) * 1e9), settings.max_signals):
        analytics.remember_signal(signal)
    for fact in await store.fills():
        analytics.apply(fact)
    for symbol, quote in (await store.marks()).items():
        analytics.quote(symbol, quote.bid, quote.ask, quote.ts_ns)


SERVICE = ServiceDefinition(
    "performance-analytics",
    settings=PerformanceAnalyticsSettings,
    contract=CONTRACT,
    uses=(ClickHouse(own_embedded_dir=True), Bus(), TokenAuth()),
    routers=(router,),
    start=start,
)
