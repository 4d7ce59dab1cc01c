"""What trading-engine's routes and handlers share while it runs, reached as ``TradingEngineDep``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import asyncpg
from fastapi import Request

from services.trading_engine.orders.manager import OrderManager
from services.trading_engine.settings import TradingEngineSettings
from shared.kit.service import state_in, state_of

if TYPE_CHECKING:
    from services.trading_engine.bots.runner import BotRunner
    from services.trading_engine.risk_wiring import EngineRiskBackend
    from services.trading_engine.venues.mt5 import Mt5Venue


@dataclass(frozen=True)
class TradingEngine:
    settings: TradingEngineSettings
    pool: asyncpg.Pool
    orders: OrderManager
    #: The running bots (the bots routes' desk); ``None`` in a test engine without them.
    bots: BotRunner | None = None
    #: The risk routes' backend (limits, kill switches).
    risk: EngineRiskBackend | None = None
    #: The MT5 venue's link, if the engine has that venue.
    mt5: Mt5Venue | None = None


#: ``service: TradingEngineDep`` in a route's parameters gives the running service's state.
TradingEngineDep = Annotated[TradingEngine, state_of(TradingEngine)]


def current_risk_backend(request: Request) -> EngineRiskBackend:
    """The running engine's risk backend (the risk routes' dependency)."""
    engine = state_in(request.scope, TradingEngine)
    if engine is None or engine.risk is None:  # a wiring bug: a 500 and the log
        raise RuntimeError("this app has no running trading engine with risk controls")
    return engine.risk
