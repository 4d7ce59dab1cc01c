"""trading-engine (8007): order management, pre-trade risk, venues, positions.

The venues are built by a ``VenueFactory`` given the runtime and the report sink (the order
manager's ``on_report``): ``SERVICE`` uses ``configured_venues``; a test builds its own definition
with ``definition(factory)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from services.trading_engine import routes
from services.trading_engine.accounts import ensure_platform_paper_account
from services.trading_engine.balance import BalanceManager
from services.trading_engine.consumers import subscribe_prices
from services.trading_engine.orders.manager import OrderManager
from services.trading_engine.prices import LastPrices
from services.trading_engine.settings import TradingEngineSettings
from services.trading_engine.state import TradingEngine
from services.trading_engine.venues.base import ReportSink, Venue, VenueReport
from shared.events import Fill, MarketBar, OrderUpdated
from shared.kit.contract import Consumes, Contract
from shared.kit.deps import Bus, Postgres, TokenAuth
from shared.kit.service import Runtime, ServiceDefinition
from shared.outbox import Outbox

#: What this service publishes (event classes), consumes (Consumes(event, group, purpose)) and calls.
CONTRACT = Contract(
    produces=(OrderUpdated, Fill),
    consumes=(Consumes(MarketBar, group=None, purpose="last prices: what market orders reserve at"),),
)

#: The engine's outbox table (``shared.outbox``).
OUTBOX_TABLE = "trading.outbox"

Rt = Runtime[TradingEngineSettings, TradingEngine]
#: Builds the venues, by name (``paper``, ``mt5``), delivering their reports to the sink.
VenueFactory = Callable[[Rt, ReportSink], Mapping[str, Venue]]


def configured_venues(rt: Rt, sink: ReportSink) -> Mapping[str, Venue]:
    """The venues of a running engine. None yet: the paper venue (``venues/paper.py``) is wired in
    here when it lands; until then every order is rejected ``venue_unavailable``."""
    return {}


def make_start(venues: VenueFactory) -> Callable[[Rt], Any]:
    async def start(rt: Rt) -> TradingEngine:
        settings = rt.settings
        publishers = {event.TOPIC: rt.bus.publisher(event) for event in (OrderUpdated, Fill)}
        outbox = Outbox(rt.postgres, OUTBOX_TABLE, publishers, grace_s=settings.outbox_grace_s)
        prices = LastPrices()
        subscribe_prices(rt.bus, prices)
        holder: dict[str, OrderManager] = {}

        async def sink(report: VenueReport) -> None:
            await holder["manager"].on_report(report)

        manager = OrderManager(
            rt.postgres,
            outbox,
            BalanceManager(settings.commission_per_lot),
            venues(rt, sink),
            prices,
            never_reached_grace_s=settings.never_reached_grace_s,
            submit_timeout_s=settings.submit_timeout_s,
        )
        holder["manager"] = manager
        if await ensure_platform_paper_account(rt.postgres, settings.paper_starting_balance, settings.account_currency):
            rt.log.info("created the platform's paper account with %s", settings.paper_starting_balance)

        async def reconcile() -> None:
            await manager.run_reconciliation(settings.reconcile_interval_s)

        async def sweep() -> None:
            await outbox.run(settings.outbox_sweep_interval_s)

        rt.background("outbox-delivery", outbox.run_delivery)
        rt.background("reconciliation", reconcile)
        rt.background("outbox-sweep", sweep)
        return TradingEngine(settings, rt.postgres, manager)

    return start


def definition(venues: VenueFactory) -> ServiceDefinition[TradingEngineSettings, TradingEngine]:
    """trading-engine's declaration with the venues ``venues`` builds."""
    return ServiceDefinition(
        "trading-engine",
        settings=TradingEngineSettings,
        contract=CONTRACT,
        uses=(Postgres(), Bus(), TokenAuth()),
        routers=routes.routers,
        start=make_start(venues),
    )


SERVICE = definition(configured_venues)
