"""trading-engine (8007): order management, pre-trade risk, venues, positions."""

from __future__ import annotations

from services.trading_engine.routes import router
from services.trading_engine.settings import TradingEngineSettings
from services.trading_engine.state import TradingEngine
from shared.kit.contract import Contract
from shared.kit.service import Runtime, ServiceDefinition

#: What this service publishes (event classes), consumes (Consumes(event, group, purpose)) and calls.
CONTRACT = Contract()


async def start(rt: Runtime[TradingEngineSettings, TradingEngine]) -> TradingEngine:
    """Wire the service: publishers and subscribers from rt.bus, pools from rt.postgres..., and
    rt.background(...) for loops. Everything declared in CONTRACT must be used here."""
    return TradingEngine(rt.settings)


SERVICE = ServiceDefinition(
    "trading-engine",
    settings=TradingEngineSettings,
    contract=CONTRACT,
    uses=(),  # e.g. (Postgres(), Bus(), TokenAuth()) from shared.kit.deps
    routers=(router,),
    start=start,
)
