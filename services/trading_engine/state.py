"""What trading-engine's routes and handlers share while it runs, reached as ``TradingEngineDep``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import asyncpg

from services.trading_engine.orders.manager import OrderManager
from services.trading_engine.settings import TradingEngineSettings
from shared.kit.service import state_of


@dataclass(frozen=True)
class TradingEngine:
    settings: TradingEngineSettings
    pool: asyncpg.Pool
    orders: OrderManager


#: ``service: TradingEngineDep`` in a route's parameters gives the running service's state.
TradingEngineDep = Annotated[TradingEngine, state_of(TradingEngine)]
