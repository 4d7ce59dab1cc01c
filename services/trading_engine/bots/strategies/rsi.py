"""The "rsi" strategy: the seed's RSI rule (``shared.strategies.rsi``, the same one ai-orchestration
votes with) on the bot's real position, its own maturity count and the trend it was last given."""

from __future__ import annotations

from services.trading_engine.bots.memory import BotMemory
from services.trading_engine.bots.model import BotConfig, Holding
from services.trading_engine.bots.strategies.base import BarInput, Decision, StrategyInput
from shared.strategies.rsi import RsiThresholds, rsi_action


def thresholds(config: BotConfig) -> RsiThresholds:
    """The rule's parameters from a bot's config."""
    return RsiThresholds(
        config.rsi_enter_long,
        config.rsi_enter_short,
        config.rsi_exit_long,
        config.rsi_exit_short,
        config.rsi_maturity_bars,
        config.trend_required,
    )


class RsiStrategy:
    input_kind = BarInput

    def decide(self, given: StrategyInput, config: BotConfig, memory: BotMemory, holding: Holding) -> Decision:
        """``memory.bars`` already counts this bar (the brain counts every closed bar it is given)."""
        if not isinstance(given, BarInput):
            return Decision.none("not_a_bar")
        position = holding.side if holding.quantity > 0 else "flat"
        rsi = given.rsi
        proposal = rsi_action(position, memory.bars, rsi, memory.trend, thresholds(config))
        if not proposal.mature:
            return Decision.none(f"immature ({memory.bars}/{config.rsi_maturity_bars} bars, rsi {rsi})")
        match proposal.action:
            case "enter_long":
                return Decision("open_long", f"rsi {rsi:.2f} <= {config.rsi_enter_long}")
            case "enter_short":
                return Decision("open_short", f"rsi {rsi:.2f} >= {config.rsi_enter_short}")
            case "exit_long":
                return Decision("close", f"rsi {rsi:.2f} >= {config.rsi_exit_long} (exit long)")
            case "exit_short":
                return Decision("close", f"rsi {rsi:.2f} <= {config.rsi_exit_short} (exit short)")
        return Decision.none(f"hold (rsi {rsi:.2f}, {position}, trend {memory.trend})")
