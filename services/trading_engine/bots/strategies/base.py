"""The interface every strategy implements: an input, the bot's config and memory, the engine's
position -> a decision (open long/short, close, or nothing) with its reason.

Inputs are what the engine feeds a bot: a validated signal of the intelligence pipeline
(``SignalInput``), or the feature vector of a closed bar (``BarInput``: its RSI, ATR and close).
Each has the event time it describes (``ts_ns``, the bar's open), an id, and the parts of its
SignalDeduplicator fingerprint (symbol, direction, strategy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from services.trading_engine.bots.memory import BotMemory
from services.trading_engine.bots.model import BotConfig, Holding
from shared.events import FeatureVector, Timeframe, ValidatedSignal

DecisionAction = Literal["open_long", "open_short", "close", "none"]

#: The features a bar input reads (``shared.features``, set ``core-1``).
RSI_FEATURE = "rsi_14"
ATR_FEATURE = "atr_14"
CLOSE_FEATURE = "close"


@dataclass(frozen=True, slots=True)
class Decision:
    action: DecisionAction
    reason: str

    @classmethod
    def none(cls, reason: str) -> Decision:
        return cls("none", reason)


@dataclass(frozen=True, slots=True)
class SignalInput:
    """A validated signal (``signals`` bots)."""

    validated: ValidatedSignal

    @property
    def symbol(self) -> str:
        return self.validated.signal.symbol

    @property
    def timeframe(self) -> Timeframe:
        return self.validated.signal.timeframe

    @property
    def ts_ns(self) -> int:
        return self.validated.signal.ts_event

    @property
    def input_id(self) -> str:
        return str(self.validated.signal.event_id)

    @property
    def direction(self) -> str:
        return self.validated.signal.direction

    @property
    def source(self) -> str:
        return self.validated.signal.strategy


@dataclass(frozen=True, slots=True)
class BarInput:
    """The feature vector of a closed bar (``rsi`` bots)."""

    vector: FeatureVector

    @property
    def symbol(self) -> str:
        return self.vector.symbol

    @property
    def timeframe(self) -> Timeframe:
        return self.vector.timeframe

    @property
    def ts_ns(self) -> int:
        return self.vector.ts_event

    @property
    def input_id(self) -> str:
        return str(self.vector.event_id)

    @property
    def direction(self) -> str:
        return "bar"

    @property
    def source(self) -> str:
        return self.vector.feature_set

    @property
    def rsi(self) -> float | None:
        return self.vector.features.get(RSI_FEATURE)

    @property
    def close(self) -> float | None:
        return self.vector.features.get(CLOSE_FEATURE)

    @property
    def atr(self) -> float | None:
        return self.vector.features.get(ATR_FEATURE)


StrategyInput = SignalInput | BarInput


class Strategy(Protocol):
    """One built-in strategy."""

    @property
    def input_kind(self) -> type[SignalInput] | type[BarInput]:
        """The input it trades on (the other kind is not its input)."""
        ...

    def decide(self, given: StrategyInput, config: BotConfig, memory: BotMemory, holding: Holding) -> Decision:
        """What to do on ``given`` with the engine's position ``holding`` (``memory`` read, not changed)."""
        ...
