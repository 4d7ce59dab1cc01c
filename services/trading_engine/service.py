"""trading-engine (8007): order management, pre-trade risk, venues, positions, bots.

The venues are built by a ``VenueFactory`` given the runtime and the report sink: ``SERVICE`` uses
``configured_venues`` (the paper venue and the MT5 venue's link); a test builds its own definition
with ``definition(factory)``. Reports reach the order manager, then the throttle (venue
rejections) and the bots (their positions after a fill).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from services.trading_engine import routes
from services.trading_engine.accounts import PLATFORM_PAPER_ACCOUNT, ensure_platform_paper_account
from services.trading_engine.balance import BalanceManager
from services.trading_engine.bot_wiring import Atrs, EngineIntents, EngineMarket, Quotes, create_default_bots
from services.trading_engine.bots.routes import router as bots_router
from services.trading_engine.bots.runner import BotRunner
from services.trading_engine.consumers import subscribe_bot_inputs, subscribe_prices, subscribe_ticks
from services.trading_engine.orders.manager import OrderManager
from services.trading_engine.prices import LastPrices
from services.trading_engine.risk.controls import RiskControls
from services.trading_engine.risk.routes import risk_router
from services.trading_engine.risk_wiring import EngineRiskBackend, RiskCheck, ThrottledSink, TripQueue
from services.trading_engine.settings import TradingEngineSettings
from services.trading_engine.state import TradingEngine, current_risk_backend
from services.trading_engine.venues.base import ReportSink, Venue, VenueReport
from services.trading_engine.venues.mt5 import Mt5Venue, Mt5VenueSettings
from services.trading_engine.venues.mt5_link_store import Mt5LinkStore
from services.trading_engine.venues.mt5_routes import router as mt5_router
from services.trading_engine.venues.paper import PaperVenue, PaperVenueSettings
from shared.events import (
    BotChanged,
    FeatureVector,
    Fill,
    KillSwitchChanged,
    MarketBar,
    MarketTick,
    OrderUpdated,
    RiskLimitsChanged,
    ValidatedSignal,
    now_ns,
)
from shared.kit.contract import Consumes, Contract
from shared.kit.deps import Bus, Postgres, TokenAuth
from shared.kit.service import Runtime, ServiceDefinition
from shared.outbox import Outbox
from shared.periodic import every

log = logging.getLogger(__name__)

#: What this service publishes (event classes), consumes (Consumes(event, group, purpose)) and calls.
CONTRACT = Contract(
    produces=(OrderUpdated, Fill, RiskLimitsChanged, KillSwitchChanged, BotChanged),
    consumes=(
        Consumes(MarketBar, group=None, purpose="last prices: what market orders reserve at"),
        Consumes(MarketTick, group=None, purpose="the paper venue's fills, the bots' stops, last quotes"),
        Consumes(ValidatedSignal, group="trading-engine.bots", purpose="the signals the bots trade"),
        Consumes(FeatureVector, group="trading-engine.bots", purpose="the rsi bots' bars, trend and ATR"),
    ),
)

#: The engine's outbox table (``shared.outbox``).
OUTBOX_TABLE = "trading.outbox"

Rt = Runtime[TradingEngineSettings, TradingEngine]
#: Builds the venues, by name (``paper``, ``mt5``), delivering their reports to the sink.
VenueFactory = Callable[[Rt, ReportSink], Mapping[str, Venue]]


async def _mt5_tenant(rt: Rt, account_id: str) -> str | None:
    tenant: str | None = await rt.postgres.fetchval(
        "SELECT tenant FROM trading.accounts WHERE id = $1 AND venue = 'mt5'", account_id
    )
    return tenant


def engine_clock(rt: Rt) -> Callable[[], int]:
    """Nanoseconds since the epoch: the wall clock, or the one a test injects (``Overrides.wall_clock``)."""
    wall = rt.overrides.wall_clock
    if wall is None:
        return now_ns
    return lambda: int(wall() * 1_000_000_000)


def configured_venues(rt: Rt, sink: ReportSink) -> Mapping[str, Venue]:
    """The paper venue (in this process, on its own tables) and the MT5 venue (the connector's link)."""
    s = rt.settings
    paper = PaperVenue(
        rt.postgres,
        PaperVenueSettings(
            latency_ms=s.paper_latency_ms,
            extra_spread_points=s.paper_extra_spread_points,
            slippage_bps=s.paper_slippage_bps,
            commission_per_lot=s.paper_commission_per_lot,
            commission_bps=s.paper_commission_bps,
            partial_fill_ratio=s.paper_partial_fill_ratio,
        ),
        engine_clock(rt),
        sink,
    )
    mt5 = Mt5Venue(
        Mt5LinkStore(rt.postgres),
        sink,
        lambda account_id: _mt5_tenant(rt, account_id),
        Mt5VenueSettings(
            submit_timeout_s=s.mt5_take_timeout_s,
            command_ttl_s=s.mt5_command_ttl_s,
            redeliver_after_s=s.mt5_redeliver_after_s,
            snapshot_max_age_s=s.mt5_snapshot_max_age_s,
        ),
        engine_clock(rt),
    )
    return {"paper": paper, "mt5": mt5}


def _every(seconds: float, step: Callable[[], Awaitable[Any]]) -> Awaitable[None]:
    return every(seconds, step, log=log, what=f"periodic step {step.__name__}", at_once=False, level=logging.WARNING)


def make_start(venues: VenueFactory, risk_gate: bool) -> Callable[[Rt], Any]:
    async def start(rt: Rt) -> TradingEngine:
        settings = rt.settings
        clock = engine_clock(rt)
        events = (OrderUpdated, Fill, RiskLimitsChanged, KillSwitchChanged)
        publishers = {event.TOPIC: rt.bus.publisher(event) for event in events}
        outbox = Outbox(rt.postgres, OUTBOX_TABLE, publishers, grace_s=settings.outbox_grace_s)
        prices = LastPrices()
        subscribe_prices(rt.bus, prices)
        controls = RiskControls()
        async with rt.postgres.acquire() as conn:
            await controls.load(conn)
        holder: dict[str, Any] = {}
        trips = TripQueue()
        throttled = ThrottledSink(lambda: holder["manager"], controls, trips)

        async def sink(report: VenueReport) -> None:
            await throttled(report)
            if report.kind == "fill":
                await holder["bots"].on_account_fill(report)

        built = venues(rt, sink)
        manager = OrderManager(
            rt.postgres,
            outbox,
            BalanceManager(settings.commission_per_lot),
            built,
            prices,
            checks=(RiskCheck(controls, prices, trips),) if risk_gate else (),
            never_reached_grace_s=settings.never_reached_grace_s,
            submit_timeout_s=settings.submit_timeout_s,
            clock=clock,
        )
        holder["manager"] = manager
        backend = EngineRiskBackend(rt.postgres, outbox, controls, manager, clock)
        trips.backend = backend
        quotes, atrs = Quotes(), Atrs()
        market = EngineMarket(rt.postgres, quotes, atrs)
        bot_changes = rt.bus.publisher(BotChanged)

        async def publish_bot_change(event: BotChanged) -> None:
            await bot_changes.publish([event])

        bots = BotRunner(rt.postgres, EngineIntents(manager), market, publish_bot_change, clock)
        holder["bots"] = _BotFills(bots, market, rt)
        rt.log.info("%d bots running", await bots.load())
        if await ensure_platform_paper_account(rt.postgres, settings.paper_starting_balance, settings.account_currency):
            rt.log.info("created the platform's paper account with %s", settings.paper_starting_balance)

            async def default_bots() -> None:  # once the bus runs: their BotChanged events are published
                made = await create_default_bots(
                    bots, rt.postgres, settings.default_bots, PLATFORM_PAPER_ACCOUNT, clock
                )
                rt.log.info("started %d default bots: %s", len(made), ", ".join(settings.default_bots))

            rt.after_start(default_bots)

        paper = built.get("paper")
        mt5 = built.get("mt5")

        async def on_tick(tick: MarketTick) -> None:
            mid = (tick.bid + tick.ask) / 2
            prices.update(tick.symbol, tick.ts_event, mid)
            quotes.update(tick.symbol, tick.bid, tick.ask)
            if isinstance(paper, PaperVenue):
                await paper.on_tick(tick.symbol, tick.bid, tick.ask, tick.ts_event)
            await bots.on_quote(tick.symbol, tick.bid, tick.ask)

        async def on_vector(vector: FeatureVector) -> None:
            atrs.update(vector)
            await bots.on_vector(vector)

        subscribe_ticks(rt.bus, on_tick, rt.platform.kafka_fetch_max_wait_ms)
        pacer = subscribe_bot_inputs(rt.bus, bots.on_signal, on_vector, settings, rt.platform.kafka_fetch_max_wait_ms)

        async def reconcile() -> None:
            await manager.run_reconciliation(settings.reconcile_interval_s)

        async def sweep() -> None:
            await outbox.run(settings.outbox_sweep_interval_s)

        async def venue_upkeep() -> None:
            if isinstance(paper, PaperVenue):
                await paper.deliver_pending()
                await paper.expire_due()
            if isinstance(mt5, Mt5Venue):
                await mt5.withdraw_expired()

        async def auto_mode() -> None:
            tenants = await rt.postgres.fetch("SELECT DISTINCT tenant FROM trading.bot_auto_config")
            for row in tenants:
                await bots.run_auto(row["tenant"])
            await bots.publish_pending()

        async def owed_reports() -> None:
            if isinstance(paper, PaperVenue):
                await paper.deliver_pending()

        rt.after_start(owed_reports)
        rt.background("outbox-delivery", outbox.run_delivery)
        rt.background("reconciliation", reconcile)
        rt.background("outbox-sweep", sweep)
        rt.background("kill-switch-trips", trips.run)
        rt.background("venue-upkeep", lambda: _every(1.0, venue_upkeep))
        rt.background("auto-mode", lambda: _every(settings.auto_interval_s, auto_mode))
        rt.background("poll-pacer", pacer.run)
        return TradingEngine(
            settings, rt.postgres, manager, bots=bots, risk=backend, mt5=mt5 if isinstance(mt5, Mt5Venue) else None
        )

    return start


class _BotFills:
    """After a fill: the bots of that account and symbol learn their position (stops arm or drop)."""

    def __init__(self, bots: BotRunner, market: EngineMarket, rt: Rt) -> None:
        self.bots = bots
        self.market = market
        self.rt = rt

    async def on_account_fill(self, report: VenueReport) -> None:
        row = await self.rt.postgres.fetchrow(
            "SELECT o.tenant, o.symbol FROM trading.orders o WHERE o.account_id = $1 AND o.client_order_id = $2",
            report.account_id,
            report.client_order_id,
        )
        if row is None:
            return
        holding = await self.market.holding(row["tenant"], report.account_id, row["symbol"])
        await self.bots.on_position(row["tenant"], report.account_id, row["symbol"], holding)


def definition(
    venues: VenueFactory, *, risk_gate: bool = True
) -> ServiceDefinition[TradingEngineSettings, TradingEngine]:
    """trading-engine's declaration with the venues ``venues`` builds. ``risk_gate=False`` (tests of
    the order management alone) places orders without the pre-trade risk checks."""
    return ServiceDefinition(
        "trading-engine",
        settings=TradingEngineSettings,
        contract=CONTRACT,
        uses=(Postgres(), Bus(), TokenAuth()),
        routers=(*routes.routers, risk_router(current_risk_backend), bots_router, mt5_router),
        start=make_start(venues, risk_gate),
    )


SERVICE = definition(configured_venues)
