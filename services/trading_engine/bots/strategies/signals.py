"""The "signals" strategy: trade the validated signals of the intelligence pipeline.

``enter_long`` opens a long when flat, closes a short first (the next signal may then open the
long: one order per signal, never a reversal in one order); ``exit_long`` closes a long; ``hold``
does nothing. Entries need ``min_confidence`` and ``min_strength``; exits are always followed
(a filter that kept a position open would add risk, not remove it).
"""

from __future__ import annotations

from services.trading_engine.bots.memory import BotMemory
from services.trading_engine.bots.model import BotConfig, Holding
from services.trading_engine.bots.strategies.base import Decision, SignalInput, StrategyInput


class SignalsStrategy:
    input_kind = SignalInput

    def decide(self, given: StrategyInput, config: BotConfig, memory: BotMemory, holding: Holding) -> Decision:
        if not isinstance(given, SignalInput):
            return Decision.none("not_a_signal")
        signal = given.validated.signal
        action = signal.action
        if action == "hold":
            return Decision.none("hold")
        if action in ("exit_long", "exit_short"):
            held = "long" if action == "exit_long" else "short"
            if holding.side != held or holding.quantity <= 0:
                return Decision.none(f"{action} while {holding.side}")
            return Decision("close", f"signal {action}")
        if signal.confidence < config.min_confidence:
            return Decision.none(f"confidence {signal.confidence:.3f} < {config.min_confidence}")
        if signal.strength < config.min_strength:
            return Decision.none(f"strength {signal.strength:.3f} < {config.min_strength}")
        wanted = "long" if action == "enter_long" else "short"
        if holding.side == wanted:
            return Decision.none(f"{action} while already {wanted}")
        if holding.side != "flat" and holding.quantity > 0:
            return Decision("close", f"signal {action} while {holding.side}: close first")
        return Decision(
            "open_long" if wanted == "long" else "open_short", f"signal {action} conf {signal.confidence:.3f}"
        )
