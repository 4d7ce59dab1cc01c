"""Auto mode, as the seed's auto bot: create bots for the symbols whose validated signals pass the filters.

A tenant's ``AutoConfig`` says whether it is on, which account its bots trade, how many active bots
(created, running or paused; the auto mode's and anyone else's on that account) it allows at once,
the minimum confidence of a signal, the symbols allowed (``None``: every symbol the platform trades),
the strategy and the config its bots get. ``plan`` is pure: given the newest validated signals and
the account's bots, which symbols get a bot now. A signal passes when it is an entry
(``enter_long``/``enter_short``) of the config's timeframe, confident enough, for an allowed symbol
the platform trades, no active bot holds that symbol on the account (no duplicate bot) and the
account has no position in it (the seed's "no existing position" filter). The
most confident pass first (ties by symbol), up to the free places.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from services.trading_engine.bots.model import Bot, BotConfig, StrategyName
from shared.events import SYMBOL_PATTERN, ExternalId, ValidatedSignal
from shared.instruments import instrument


class AutoConfig(BaseModel):
    """A tenant's auto mode (``GET/PUT /api/v1/bots/auto``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    #: The account the created bots trade (required to enable it).
    account_id: ExternalId | None = None
    max_concurrent: Annotated[int, Field(ge=0, le=1000)] = 5
    min_confidence: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.6
    allowed_symbols: list[Annotated[str, Field(pattern=SYMBOL_PATTERN)]] | None = None
    strategy: StrategyName = "signals"
    bot_config: BotConfig = Field(default_factory=BotConfig)


@dataclass(frozen=True, slots=True)
class AutoPick:
    """A bot the auto mode creates: its symbol, and the signal that earned it."""

    symbol: str
    signal: ValidatedSignal
    reason: str


def plan(
    config: AutoConfig,
    signals: Iterable[ValidatedSignal],
    bots: Iterable[Bot],
    positions: Iterable[str] = (),
) -> list[AutoPick]:
    """Which symbols get a new bot now (``bots``: the tenant's bots, only the config's account counts;
    ``positions``: symbols the account already holds a position in, opened by hand or elsewhere)."""
    if not config.enabled or config.account_id is None:
        return []
    active = [b for b in bots if b.active and b.account_id == config.account_id]
    held = {b.symbol for b in active} | set(positions)
    free = config.max_concurrent - len(active)
    if free <= 0:
        return []
    allowed = None if config.allowed_symbols is None else set(config.allowed_symbols)
    newest: dict[str, ValidatedSignal] = {}
    for validated in signals:
        s = validated.signal
        if s.timeframe != config.bot_config.timeframe or s.action not in ("enter_long", "enter_short"):
            continue
        if s.confidence < config.min_confidence or s.symbol in held or instrument(s.symbol) is None:
            continue
        if allowed is not None and s.symbol not in allowed:
            continue
        seen = newest.get(s.symbol)
        if seen is None or s.ts_event > seen.signal.ts_event:
            newest[s.symbol] = validated
    ranked = sorted(newest.values(), key=lambda v: (-v.signal.confidence, v.signal.symbol))
    return [
        AutoPick(v.signal.symbol, v, f"auto: {v.signal.action} conf {v.signal.confidence:.3f}") for v in ranked[:free]
    ]
