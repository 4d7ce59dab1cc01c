"""One bot at work: inputs in (signals or closed bars, quotes, its position after fills), intents out.

The engine keeps one ``BotBrain`` per active bot and, for each input:

    outcome = brain.on_input(given, holding, market)
    if outcome.intent:
        await sink.submit(outcome.intent)        # first: its client order id is deterministic
    await store.save_memory(conn, brain.bot)     # then: the input is remembered as processed

A crash between the two decides the input again on its redelivery: the same intent, the same
client order id, no second order. After the save, the input is a duplicate twice over: its event
time is not newer than the newest processed (``memory.last_input_ns``; a replay of an old log after
a broker restart), and its fingerprint is in the SignalDeduplicator's window (restored from memory).

Stops work on quotes (``on_price``) while the bot runs or is paused (a paused bot takes no new
inputs but its position stays protected); ``on_position`` tells the bot what the engine's position
became after a fill, which arms the stops at the real entry price.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Literal

from services.trading_engine.bots.intents import Intent, intent_client_order_id
from services.trading_engine.bots.memory import BotMemory
from services.trading_engine.bots.model import Bot, BotConfig, Holding, MarketView
from services.trading_engine.bots.sizing import fixed_fractional, to_volume, volatility_target
from services.trading_engine.bots.stops import AtrUnknown, StopTracker
from services.trading_engine.bots.strategies import STRATEGIES, BarInput, Decision, SignalInput, StrategyInput
from shared.dedup import SignalDeduplicator, fingerprint
from shared.events import FeatureVector, OrderAttribution
from shared.instruments import Instrument, instrument
from shared.strategies.rsi import trend_of

#: Features of a higher-timeframe vector that give the trend filter (as ai-orchestration reads them).
TREND_PRICE_FEATURE = "close"
TREND_AVERAGE_FEATURE = "ema_50"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an input led to: an intent, or none and why (``processed``: it was the bot's to decide)."""

    intent: Intent | None
    reason: str
    processed: bool


class BotBrain:
    def __init__(self, bot: Bot, facts: Instrument | None = None) -> None:
        self.bot = bot
        found = facts or instrument(bot.symbol)
        if found is None:
            raise ValueError(f"{bot.symbol} is not a symbol the platform trades")
        self.instrument = found
        self.strategy = STRATEGIES[bot.strategy]
        self.rollback(bot.memory.to_json())

    def snapshot(self) -> dict[str, Any]:
        """The memory as it is now (``rollback`` returns to it)."""
        return self.bot.memory.to_json()

    def rollback(self, snapshot: dict[str, Any]) -> None:
        """Forget what happened since ``snapshot`` (an intent that could not be submitted): the input
        is then new again, for its redelivery."""
        self.bot.memory = BotMemory.from_json(snapshot)
        self.dedup = SignalDeduplicator(self.bot.config.dedup_window_s)
        for fp, ts in self.bot.memory.fingerprints:
            self.dedup.remember(fp, ts)

    # -- inputs --------------------------------------------------------------------------------

    def on_input(self, given: StrategyInput, holding: Holding, market: MarketView) -> Outcome:
        """Decide on a signal or a closed bar; the memory changes only when the input was processed."""
        bot, memory = self.bot, self.bot.memory
        if bot.state != "running":
            return Outcome(None, f"bot is {bot.state}", False)
        if not isinstance(given, self.strategy.input_kind):
            return Outcome(None, f"not an input of the {bot.strategy} strategy", False)
        if given.symbol != bot.symbol or given.timeframe != bot.config.timeframe:
            return Outcome(None, "another series", False)
        if given.ts_ns <= memory.last_input_ns:
            return Outcome(None, "replay: not newer than the last input processed", False)
        fp = fingerprint(given.symbol, given.direction, given.source, given.ts_ns)
        if self.dedup.seen(fp, given.ts_ns):
            return Outcome(None, "duplicate signal (SignalDeduplicator)", False)
        if isinstance(given, BarInput):
            memory.bars += 1  # the RSI rule's maturity counts every closed bar it is given
            if market.atr is None and given.atr is not None:
                market = replace(market, atr=Decimal(str(given.atr)))
        decision = self.strategy.decide(given, bot.config, memory, holding)
        intent, reason = self._intent(decision, given, holding, market)
        self.dedup.remember(fp, given.ts_ns)
        memory.fingerprints = self.dedup.seen_items()
        memory.last_input_ns = given.ts_ns
        memory.last_input_id = given.input_id
        if intent is not None:
            memory.intents += 1
            if intent.action != "close":
                memory.entry_atr = market.atr
        return Outcome(intent, reason, True)

    def on_trend(self, vector: FeatureVector) -> bool:
        """Take a higher-timeframe vector as the trend filter's reading; whether it changed."""
        if vector.symbol != self.bot.symbol:
            return False
        trend = trend_of(vector.features.get(TREND_PRICE_FEATURE), vector.features.get(TREND_AVERAGE_FEATURE))
        changed = trend != self.bot.memory.trend
        self.bot.memory.trend = trend
        return changed

    def on_position(self, holding: Holding) -> bool:
        """The engine's position after a fill; arms the stops on an opening, drops them when flat."""
        memory = self.bot.memory
        side = holding.side if holding.quantity > 0 else "flat"
        if side == memory.position and holding.quantity == memory.quantity:
            return False
        opened = side != "flat" and side != memory.position
        memory.position, memory.quantity = side, holding.quantity
        memory.entry_price = holding.average_price if side != "flat" else None
        if side == "flat":
            memory.stops = None
        elif opened and holding.average_price is not None:
            try:
                memory.stops = StopTracker.open(side, holding.average_price, self.bot.config, memory.entry_atr)
            except AtrUnknown:
                memory.stops = None
        return True

    def on_price(self, bid: Decimal, ask: Decimal) -> Intent | None:
        """A quote: move the trail, and close the position if a stop triggered (once per position)."""
        bot, memory = self.bot, self.bot.memory
        stops = memory.stops
        if stops is None or bot.state not in ("running", "paused") or memory.quantity <= 0:
            return None
        hit = stops.on_price(bid, ask)
        if hit is None:
            return None
        # Fired: not again on the next quote. The cause is the position's opening intent count, so a
        # quote redelivered before this memory was saved gives the same client order id.
        cause = f"stop|{memory.intents}|{stops.entry}"
        memory.stops = None
        memory.intents += 1
        return self._order(
            "close",
            "sell" if stops.side == "long" else "buy",
            memory.quantity,
            f"{hit.kind.replace('_', ' ')} {hit.level} touched at {hit.price}",
            cause,
            None,
            OrderAttribution(bot_id=bot.bot_id, strategy=bot.strategy),
        )

    # -- intents ---------------------------------------------------------------------------------

    def _intent(
        self, decision: Decision, given: StrategyInput, holding: Holding, market: MarketView
    ) -> tuple[Intent | None, str]:
        if decision.action == "none":
            return None, decision.reason
        attribution = _attribution(self.bot, given)
        cause = f"input|{given.input_id}"
        if decision.action == "close":
            if holding.quantity <= 0:
                return None, f"{decision.reason}: nothing to close"
            closing: Literal["buy", "sell"] = "sell" if holding.side == "long" else "buy"
            return self._order(
                "close", closing, holding.quantity, decision.reason, cause, None, attribution
            ), decision.reason
        side: Literal["long", "short"] = "long" if decision.action == "open_long" else "short"
        entry = _entry_price(side, market, given)
        opening: Literal["buy", "sell"] = "buy" if side == "long" else "sell"
        config = self.bot.config
        if entry is None and config.sizing == "fixed_lots" and config.lots is not None and not _has_stops(config):
            # Needs no price (a restarted engine has none until its first tick): the order's own
            # reservation and the risk gate price it, and the stops arm on its fill.
            return self._order(decision.action, opening, config.lots, decision.reason, cause, None, attribution), (
                decision.reason
            )
        if entry is None:
            return None, f"{decision.reason}: no price to size from"
        try:
            stop = StopTracker.open(side, entry, self.bot.config, market.atr)
        except AtrUnknown as exc:
            return None, f"{decision.reason}: {exc}"
        lots = self._size(entry, stop.level, market)
        if lots is None:
            return None, f"{decision.reason}: size below the minimum of {self.instrument.volume_min} lots"
        return self._order(decision.action, opening, lots, decision.reason, cause, stop.level, attribution), (
            decision.reason
        )

    def _size(self, entry: Decimal, stop: Decimal | None, market: MarketView) -> Decimal | None:
        config = self.bot.config
        if config.sizing == "fixed_fractional":
            if stop is None or config.risk_fraction is None:
                return None
            return fixed_fractional(self.instrument, market.equity, config.risk_fraction, entry, stop)
        if config.sizing == "volatility_target":
            if config.volatility_target is None:
                return None
            return volatility_target(
                self.instrument,
                market.equity,
                config.volatility_target,
                entry,
                daily_atr=market.daily_atr,
                daily_volatility=market.daily_volatility,
            )
        return None if config.lots is None else to_volume(self.instrument, config.lots)

    def _order(
        self,
        action: str,
        side: Literal["buy", "sell"],
        quantity: Decimal,
        reason: str,
        cause: str,
        stop_loss: Decimal | None,
        attribution: OrderAttribution,
    ) -> Intent:
        bot = self.bot
        return Intent(
            bot_id=bot.bot_id,
            tenant=bot.tenant,
            account_id=bot.account_id,
            symbol=bot.symbol,
            action="close" if action == "close" else ("open_long" if action == "open_long" else "open_short"),
            side=side,
            quantity=quantity,
            reason=reason[:500],
            client_order_id=intent_client_order_id(bot.bot_id, cause),
            stop_loss=stop_loss,
            attribution=attribution,
        )


def _has_stops(config: BotConfig) -> bool:
    return config.stop_loss != "none" or config.trailing != "none"


def _entry_price(side: str, market: MarketView, given: StrategyInput) -> Decimal | None:
    """A long buys at the ask, a short sells at the bid; without a quote, the bar's close."""
    quote = market.ask if side == "long" else market.bid
    if quote is not None:
        return quote
    if isinstance(given, BarInput) and given.close is not None:
        return Decimal(str(given.close))
    return None


def _attribution(bot: Bot, given: StrategyInput) -> OrderAttribution:
    if isinstance(given, SignalInput):
        signal = given.validated.signal
        return OrderAttribution(
            bot_id=bot.bot_id,
            strategy=bot.strategy,
            signal_id=signal.event_id,
            models=[f"{c.model_name}:{c.model_version}" for c in signal.contributions],
        )
    return OrderAttribution(bot_id=bot.bot_id, strategy=bot.strategy)
