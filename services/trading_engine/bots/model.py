"""What a bot is: a strategy instance on one symbol and account, its configuration and lifecycle state.

The configuration is one flat model (``BotConfig``): it is what ``POST /api/v1/bots`` takes, what a
``BotChanged`` event carries (``flat_config``) and what the bots table stores. Its cross-field rules
(fixed-fractional sizing needs a stop-loss, a distance stop needs its distance, ...) name the field
they are about, so an API caller's 422 says what to fix.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.trading_engine.bots.memory import BotMemory
from shared.events import Timeframe

BotState = Literal["created", "running", "paused", "stopped", "deleted"]
StrategyName = Literal["signals", "rsi"]
Sizing = Literal["fixed_lots", "fixed_fractional", "volatility_target"]
StopKind = Literal["none", "distance", "atr"]

PositivePrice = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=8, allow_inf_nan=False)]
Fraction = Annotated[Decimal, Field(gt=0, le=Decimal("0.2"), max_digits=10, decimal_places=8, allow_inf_nan=False)]
Multiple = Annotated[Decimal, Field(gt=0, le=100, max_digits=10, decimal_places=4, allow_inf_nan=False)]
Level = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Unit = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class BotConfig(BaseModel):
    """A bot's parameters: what it reads, how it sizes, where its stops are, its strategy's thresholds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The bars (rsi) or signals (signals) the bot acts on.
    timeframe: Timeframe = Timeframe.M1
    #: ``fixed_lots`` (``lots``), ``fixed_fractional`` (risk ``risk_fraction`` of equity between entry
    #: and stop-loss) or ``volatility_target`` (position daily volatility = ``volatility_target`` of equity).
    sizing: Sizing = "fixed_lots"
    lots: PositivePrice | None = Decimal("0.01")
    risk_fraction: Fraction | None = None
    volatility_target: Fraction | None = None
    #: Stop-loss: ``distance`` (price units from the entry) or ``atr`` (``stop_atr_multiple`` x ATR).
    stop_loss: StopKind = "none"
    stop_distance: PositivePrice | None = None
    stop_atr_multiple: Multiple | None = None
    #: Trailing stop: follows the best price by a distance or an ATR multiple, never loosens.
    trailing: StopKind = "none"
    trail_distance: PositivePrice | None = None
    trail_atr_multiple: Multiple | None = None
    #: "signals": a signal below either is ignored.
    min_confidence: Unit = 0.0
    min_strength: Unit = 0.0
    #: "rsi": the seed's thresholds, maturity and trend filter (``shared.strategies.rsi``).
    rsi_enter_long: Level = 29.0
    rsi_enter_short: Level = 71.0
    rsi_exit_long: Level = 65.0
    rsi_exit_short: Level = 35.0
    rsi_maturity_bars: Annotated[int, Field(ge=0, le=100_000)] = 50
    trend_required: bool = False
    #: The SignalDeduplicator's window (event time).
    dedup_window_s: Annotated[int, Field(ge=1, le=86_400)] = 300

    @model_validator(mode="after")
    def _consistent(self) -> BotConfig:
        if self.sizing == "fixed_lots" and self.lots is None:
            raise ValueError("lots: fixed_lots sizing needs lots")
        if self.sizing == "fixed_fractional":
            if self.risk_fraction is None:
                raise ValueError("risk_fraction: fixed_fractional sizing needs risk_fraction")
            if self.stop_loss == "none":
                raise ValueError("stop_loss: fixed_fractional sizing risks the distance to a stop-loss; set one")
        if self.sizing == "volatility_target" and self.volatility_target is None:
            raise ValueError("volatility_target: volatility_target sizing needs volatility_target")
        if self.stop_loss == "distance" and self.stop_distance is None:
            raise ValueError("stop_distance: a distance stop-loss needs stop_distance")
        if self.stop_loss == "atr" and self.stop_atr_multiple is None:
            raise ValueError("stop_atr_multiple: an ATR stop-loss needs stop_atr_multiple")
        if self.trailing == "distance" and self.trail_distance is None:
            raise ValueError("trail_distance: a distance trailing stop needs trail_distance")
        if self.trailing == "atr" and self.trail_atr_multiple is None:
            raise ValueError("trail_atr_multiple: an ATR trailing stop needs trail_atr_multiple")
        if not self.rsi_enter_long < self.rsi_exit_long or not self.rsi_exit_short < self.rsi_enter_short:
            raise ValueError("rsi_exit_long: exits must lie between the entries (enter_long < exit_long, ...)")
        return self

    def flat(self) -> dict[str, str | int | float | bool | None]:
        """The config as ``BotChanged.config`` carries it (decimals as strings)."""
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in self.model_dump(mode="python").items()}


@dataclass
class Bot:
    """One bot: identity, configuration, lifecycle state (``version`` counts its changes) and memory."""

    bot_id: uuid.UUID
    tenant: str
    account_id: str
    symbol: str
    strategy: StrategyName
    config: BotConfig
    state: BotState = "created"
    version: int = 1
    memory: BotMemory = field(default_factory=BotMemory)
    #: ns since the epoch (the injected clock's).
    created_ns: int = 0
    updated_ns: int = 0

    @property
    def active(self) -> bool:
        """Created, running or paused: holds its symbol on its account (one active bot per pair)."""
        return self.state in ("created", "running", "paused")


PositionSide = Literal["flat", "long", "short"]


@dataclass(frozen=True, slots=True)
class Holding:
    """The engine's position of the bot's account in its symbol (``quantity`` in lots, >= 0)."""

    side: PositionSide = "flat"
    quantity: Decimal = Decimal(0)
    average_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class MarketView:
    """What the engine knows of the market when a bot decides: the quote, the account's equity, the
    ATR of the bot's timeframe (price units, for ATR stops) and the daily volatility for volatility
    targeting: a daily ATR (price units) or a realised daily volatility (a fraction of the price)."""

    bid: Decimal | None
    ask: Decimal | None
    equity: Decimal
    atr: Decimal | None = None
    daily_atr: Decimal | None = None
    daily_volatility: Decimal | None = None
