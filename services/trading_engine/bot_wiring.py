"""How the engine's bots reach the rest of the engine: their orders go through the order manager
(and so through the risk gate, as any order), their positions and market views come from the
engine's positions, last quotes, account balances and the feature vectors on the bus."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal

import asyncpg

from services.trading_engine import accounts
from services.trading_engine.bots import lifecycle, store
from services.trading_engine.bots.intents import Intent
from services.trading_engine.bots.model import Bot, BotConfig, Holding, MarketView
from services.trading_engine.bots.runner import BotRunner
from services.trading_engine.orders.manager import InvalidOrder, NotFound, OrderConflict, OrderManager
from services.trading_engine.orders.models import OrderRequest
from shared.auth.scopes import PLATFORM_TENANT
from shared.events import EVENT_NAMESPACE, FeatureVector, Timeframe

log = logging.getLogger(__name__)

DEFAULT_BOTS_ACTOR = "bootstrap"
#: Live bars a default RSI bot waits for (its indicators are warm from the stored history already).
DEFAULT_BOT_MATURITY_BARS = 3

#: Hours in a day: an H1 ATR times sqrt(24) approximates a daily ATR (volatility grows with sqrt(time)).
_SQRT_DAY_HOURS = Decimal(math.sqrt(24))


class Quotes:
    """The latest bid and ask per symbol (from the ticks on the bus)."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[Decimal, Decimal]] = {}

    def update(self, symbol: str, bid: Decimal, ask: Decimal) -> None:
        self.latest[symbol] = (bid, ask)


class Atrs:
    """The latest ATR(14) per symbol and timeframe (from the feature vectors on the bus)."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, Timeframe], Decimal] = {}

    def update(self, vector: FeatureVector) -> None:
        atr = vector.features.get("atr_14")
        if atr is not None:
            self.latest[(vector.symbol, vector.timeframe)] = Decimal(repr(atr))

    def of(self, symbol: str, timeframe: Timeframe) -> Decimal | None:
        return self.latest.get((symbol, timeframe))


class EngineMarket:
    """``bots.runner.MarketSource`` over the engine's tables and its quotes."""

    def __init__(self, pool: asyncpg.Pool, quotes: Quotes, atrs: Atrs) -> None:
        self.pool = pool
        self.quotes = quotes
        self.atrs = atrs

    async def holding(self, tenant: str, account_id: str, symbol: str) -> Holding:
        row = await self.pool.fetchrow(
            "SELECT quantity, average_price FROM trading.positions WHERE tenant = $1 AND account_id = $2 "
            "AND symbol = $3",
            tenant,
            account_id,
            symbol,
        )
        if row is None or row["quantity"] == 0:
            return Holding()
        quantity = row["quantity"]
        return Holding("long" if quantity > 0 else "short", abs(quantity), row["average_price"])

    async def view(self, bot: Bot) -> MarketView:
        bid, ask = self.quotes.latest.get(bot.symbol, (None, None))
        equity = await self.pool.fetchval("SELECT balance FROM trading.accounts WHERE id = $1", bot.account_id)
        hourly = self.atrs.of(bot.symbol, Timeframe.H1)
        return MarketView(
            bid=bid,
            ask=ask,
            equity=equity if equity is not None else Decimal(0),
            atr=self.atrs.of(bot.symbol, bot.config.timeframe),
            daily_atr=hourly * _SQRT_DAY_HOURS if hourly is not None else None,
        )

    async def account_exists(self, tenant: str, account_id: str) -> bool:
        return await accounts.account_exists(self.pool, tenant, account_id)


class EngineIntents:
    """``bots.intents.IntentSink``: an intent becomes a market order placed like any other."""

    def __init__(self, manager: OrderManager) -> None:
        self.manager = manager

    async def submit(self, intent: Intent) -> None:
        venue_stops = await self._venue_holds_stops(intent.account_id)
        request = OrderRequest(
            account_id=intent.account_id,
            symbol=intent.symbol,
            side=intent.side,
            type="market",
            quantity=intent.quantity,
            time_in_force="ioc",
            client_order_id=intent.client_order_id,
            stop_loss=intent.stop_loss if venue_stops and intent.action != "close" else None,
        )
        try:
            placed = await self.manager.place(
                request, tenant=intent.tenant, actor=f"bot:{intent.bot_id}", attribution=intent.attribution
            )
        except OrderConflict:
            return  # decided before (a redelivery): the order exists, nothing to do
        except (InvalidOrder, NotFound) as exc:
            log.warning("bot %s: %s %s refused: %s", intent.bot_id, intent.action, intent.symbol, exc)
            return
        log.info(
            "bot %s: %s %s %s lots (%s): order %s %s",
            intent.bot_id,
            intent.action,
            intent.symbol,
            intent.quantity,
            intent.reason,
            getattr(placed, "id", "?"),
            getattr(placed, "state", "?"),
        )

    async def _venue_holds_stops(self, account_id: str) -> bool:
        venue = await self.manager.pool.fetchval("SELECT venue FROM trading.accounts WHERE id = $1", account_id)
        known = self.manager.venues.get(venue) if venue is not None else None
        return bool(known is not None and known.supports_protective_stops)


async def create_default_bots(
    runner: BotRunner, pool: asyncpg.Pool, specs: Sequence[str], account_id: str, clock: Callable[[], int]
) -> list[Bot]:
    """The first start's bots on the platform's paper account (``strategy:SYMBOL`` each), started.

    Their RSI maturity is a few bars: feature-engineering warms every indicator from the stored
    history before its first vector (a value is ``None`` until then), so the seed's "enough
    history" holds at the feature level; the bot only waits for a handful of live bars.
    Deterministic ids: made again (a crash half-way), a bot already there is left as it is.
    """
    made = []
    for spec in specs:
        strategy, _, symbol = spec.partition(":")
        now = clock()
        bot = Bot(
            bot_id=uuid.uuid5(EVENT_NAMESPACE, f"default-bot|{account_id}|{strategy}|{symbol}"),
            tenant=PLATFORM_TENANT,
            account_id=account_id,
            symbol=symbol,
            strategy="rsi" if strategy == "rsi" else "signals",  # the settings allow only these two
            config=BotConfig(rsi_maturity_bars=DEFAULT_BOT_MATURITY_BARS),
            created_ns=now,
            updated_ns=now,
        )
        async with pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await store.insert_bot(conn, bot, DEFAULT_BOTS_ACTOR)
                    before = lifecycle.apply(bot, "start", now)
                    await store.save_transition(conn, bot, before, DEFAULT_BOTS_ACTOR)
            except store.BotExists:
                continue
        await runner.bot_changed(bot)
        made.append(bot)
    await runner.publish_pending()
    return made
