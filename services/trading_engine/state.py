"""What trading-engine's routes and handlers share while it runs, reached as ``TradingEngineDep``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from services.trading_engine.settings import TradingEngineSettings
from shared.kit.service import state_of


@dataclass(frozen=True)
class TradingEngine:
    settings: TradingEngineSettings


#: ``service: TradingEngineDep`` in a route's parameters gives the running service's state.
TradingEngineDep = Annotated[TradingEngine, state_of(TradingEngine)]
