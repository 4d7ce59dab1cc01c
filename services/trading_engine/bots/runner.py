"""The engine's running bots: one ``BotBrain`` per active bot, fed the engine's inputs, with the
"submit, then save" order that makes a crash at any point cost no order and duplicate none.

The engine builds one ``BotRunner`` with its pool, its intent hook, where positions and market
views come from, and its ``BotChanged`` publisher; then calls ``load()`` at start and, as events
arrive, ``on_signal`` (validated signals), ``on_vector`` (feature vectors: a bot's timeframe is its
RSI input, ``TREND_TIMEFRAME`` its trend filter), ``on_quote`` (stops) and ``on_position`` (after a
fill). It is also the routes' ``BotDesk`` (``bot_changed`` is how its running bots follow a lifecycle
change); ``run_auto`` is the auto mode's step for one tenant and ``publish_pending`` the ``BotChanged``
outbox's retry (the engine calls both periodically).

Every input of one bot is handled under that bot's lock (a quote and a signal never interleave in
one bot's memory). A failed submission raises out of ``on_*`` before the memory is saved: the
input's redelivery decides it again (the same client order id).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Protocol

import asyncpg

from services.trading_engine.bots import lifecycle, store
from services.trading_engine.bots.auto import plan
from services.trading_engine.bots.brain import BotBrain
from services.trading_engine.bots.intents import Intent, IntentSink
from services.trading_engine.bots.model import Bot, Holding, MarketView
from services.trading_engine.bots.outbox import publish_pending
from services.trading_engine.bots.strategies import BarInput, SignalInput, StrategyInput
from shared.events import EVENT_NAMESPACE, BotChanged, FeatureVector, Timeframe, ValidatedSignal

log = logging.getLogger(__name__)

#: The higher timeframe whose vectors are the RSI bots' trend filter (as ai-orchestration's default).
TREND_TIMEFRAME = Timeframe.H1
#: Auto mode: a symbol's newest signal counts while it is this recent (event time, against the newest seen).
AUTO_RECENT_NS = 300 * 1_000_000_000
AUTO_ACTOR = "auto"


class MarketSource(Protocol):
    """Where a bot's position and market view come from (the engine's positions, quotes, accounts)."""

    async def holding(self, tenant: str, account_id: str, symbol: str) -> Holding: ...

    async def view(self, bot: Bot) -> MarketView: ...

    async def account_exists(self, tenant: str, account_id: str) -> bool: ...


class BotRunner:
    def __init__(
        self,
        pool: asyncpg.Pool,
        sink: IntentSink,
        market: MarketSource,
        publish: Callable[[BotChanged], Awaitable[object]],
        clock: Callable[[], int],
    ) -> None:
        self.pool, self.sink, self.market, self._publish, self.clock = pool, sink, market, publish, clock
        self.brains: dict[uuid.UUID, BotBrain] = {}
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        #: The newest validated signal of each symbol (the auto mode's input).
        self.recent: dict[str, ValidatedSignal] = {}

    async def load(self) -> int:
        """Load every active bot from the store (at start); how many."""
        async with self.pool.acquire() as conn:
            bots = await store.active_bots(conn)
        self.brains = {b.bot_id: BotBrain(b) for b in bots}
        return len(bots)

    async def bot_changed(self, bot: Bot) -> None:
        """Follow a lifecycle change: a new bot is loaded; a known one takes the new state and version
        (its memory stays the runner's: it is newer than the copy the change was made on)."""
        known = self.brains.get(bot.bot_id)
        if not bot.active:
            self.brains.pop(bot.bot_id, None)
        elif known is None:
            self.brains[bot.bot_id] = BotBrain(bot)
        else:
            known.bot.state, known.bot.version, known.bot.updated_ns = bot.state, bot.version, bot.updated_ns

    # -- inputs --------------------------------------------------------------------------------

    async def on_signal(self, validated: ValidatedSignal) -> list[Intent]:
        symbol = validated.signal.symbol
        newest = self.recent.get(symbol)
        if newest is None or validated.signal.ts_event >= newest.signal.ts_event:
            self.recent[symbol] = validated
        return await self._feed(symbol, SignalInput(validated))

    async def on_vector(self, vector: FeatureVector) -> list[Intent]:
        if vector.timeframe == TREND_TIMEFRAME:
            for brain in self._of(vector.symbol):
                if brain.bot.strategy == "rsi" and brain.bot.config.timeframe != TREND_TIMEFRAME:
                    async with self._lock(brain):
                        if brain.on_trend(vector):
                            await self._save(brain)
        return await self._feed(vector.symbol, BarInput(vector))

    async def on_quote(self, symbol: str, bid: Decimal, ask: Decimal) -> list[Intent]:
        """Stops: a trail that moved or a stop that fired is saved (a quote that changed nothing is not)."""
        sent = []
        for brain in self._of(symbol):
            async with self._lock(brain):
                stops = brain.bot.memory.stops
                before = None if stops is None else stops.level
                snapshot = brain.snapshot()
                intent = brain.on_price(bid, ask)
                if intent is not None:
                    await self._submit(brain, intent, snapshot)
                    sent.append(intent)
                after = brain.bot.memory.stops
                if intent is not None or (after is not None and after.level != before):
                    await self._save(brain)
        return sent

    async def on_position(self, tenant: str, account_id: str, symbol: str, holding: Holding) -> None:
        """The engine's position of an account in a symbol changed (a fill): its bots arm or drop stops."""
        for brain in self._of(symbol):
            if brain.bot.account_id == account_id and brain.bot.tenant == tenant:
                async with self._lock(brain):
                    if brain.on_position(holding):
                        await self._save(brain)

    # -- auto mode -----------------------------------------------------------------------------

    async def run_auto(self, tenant: str) -> list[Bot]:
        """One step of the tenant's auto mode: create and start the bots its config picks now."""
        async with self.pool.acquire() as conn:
            found = await store.get_auto(conn, tenant)
            if found is None or not found[0].enabled:
                return []
            config = found[0]
            newest = max((v.signal.ts_event for v in self.recent.values()), default=0)
            signals = [v for v in self.recent.values() if v.signal.ts_event >= newest - AUTO_RECENT_NS]
            account = config.account_id
            if account is None:  # the API refuses to enable it so; nothing to trade on
                return []
            positions = [
                v.signal.symbol
                for v in signals
                if (await self.market.holding(tenant, account, v.signal.symbol)).quantity > 0
            ]
            picks = plan(config, signals, await store.list_bots(conn, tenant), positions)
            made = []
            for pick in picks:
                now = self.clock()
                bot = Bot(
                    # The same pick made again (a crash before the answer) is the same bot: refused as existing.
                    bot_id=uuid.uuid5(EVENT_NAMESPACE, f"auto-bot|{tenant}|{account}|{pick.signal.event_id}"),
                    tenant=tenant,
                    account_id=account,
                    symbol=pick.symbol,
                    strategy=config.strategy,
                    config=config.bot_config,
                    created_ns=now,
                    updated_ns=now,
                )
                try:
                    async with conn.transaction():
                        await store.insert_bot(conn, bot, AUTO_ACTOR)
                        before = lifecycle.apply(bot, "start", now)
                        await store.save_transition(conn, bot, before, AUTO_ACTOR)
                except store.BotExists:
                    continue
                log.info("auto mode: bot %s on %s %s (%s)", bot.bot_id, bot.account_id, bot.symbol, pick.reason)
                made.append(bot)
        for bot in made:
            await self.bot_changed(bot)
        await self.publish_pending()
        return made

    async def publish_pending(self) -> int:
        """Publish the ``BotChanged`` events not published yet (the outbox; also a periodic retry)."""
        return await publish_pending(self.pool, self._publish, self.clock())

    # -- the routes' desk (routes.BotDesk) -------------------------------------------------------

    @property
    def intents(self) -> IntentSink:
        return self.sink

    def now_ns(self) -> int:
        return self.clock()

    async def account_exists(self, tenant: str, account_id: str) -> bool:
        return await self.market.account_exists(tenant, account_id)

    async def publish(self, event: BotChanged) -> None:
        await self._publish(event)

    # -- internals -------------------------------------------------------------------------------

    async def _feed(self, symbol: str, given: StrategyInput) -> list[Intent]:
        sent = []
        for brain in self._of(symbol):
            async with self._lock(brain):
                bot = brain.bot
                if bot.state != "running":
                    continue
                holding = await self.market.holding(bot.tenant, bot.account_id, bot.symbol)
                snapshot = brain.snapshot()
                outcome = brain.on_input(given, holding, await self.market.view(bot))
                if outcome.intent is not None:
                    await self._submit(brain, outcome.intent, snapshot)  # first: then the memory is saved
                    sent.append(outcome.intent)
                if outcome.processed:
                    await self._save(brain)
        return sent

    async def _submit(self, brain: BotBrain, intent: Intent, snapshot: dict[str, Any]) -> None:
        try:
            await self.sink.submit(intent)
        except BaseException:
            brain.rollback(snapshot)  # the input is not processed: its redelivery decides it again
            raise

    def _of(self, symbol: str) -> list[BotBrain]:
        return [b for b in self.brains.values() if b.bot.symbol == symbol]

    def _lock(self, brain: BotBrain) -> asyncio.Lock:
        return self._locks.setdefault(brain.bot.bot_id, asyncio.Lock())

    async def _save(self, brain: BotBrain) -> None:
        async with self.pool.acquire() as conn:
            await store.save_memory(conn, brain.bot)
