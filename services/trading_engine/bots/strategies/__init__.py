"""The built-in strategies, by the name a bot's ``strategy`` gives."""

from __future__ import annotations

from collections.abc import Mapping

from services.trading_engine.bots.strategies.base import BarInput, Decision, SignalInput, Strategy, StrategyInput
from services.trading_engine.bots.strategies.rsi import RsiStrategy
from services.trading_engine.bots.strategies.signals import SignalsStrategy

STRATEGIES: Mapping[str, Strategy] = {"signals": SignalsStrategy(), "rsi": RsiStrategy()}

__all__ = ["STRATEGIES", "BarInput", "Decision", "SignalInput", "Strategy", "StrategyInput"]
