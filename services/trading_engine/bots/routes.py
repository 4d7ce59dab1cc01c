"""``/api/v1/bots``: create, list, read, start, pause, resume, stop and delete bots; the auto mode.

Scope ``trade`` (the auto mode's config: reading needs ``trade``, changing it ``admin``). Everything
is the caller's tenant's: another tenant's bot answers 404, as a missing one. An illegal lifecycle
command is 409 (naming the allowed ones), as is a second active bot on one symbol and account.

The router needs a ``BotDesk`` (the engine's: its pool, clock, intent hook, publisher, accounts, and
the hook its running bots follow lifecycle changes by): ``runner.BotRunner`` is one. The engine's
state exposes it as its ``bots`` attribute, which ``current_desk`` reads (tests override it).
"""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal
from typing import Annotated, Literal, Protocol

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from services.trading_engine.bots import lifecycle, store
from services.trading_engine.bots.auto import AutoConfig
from services.trading_engine.bots.intents import Intent, IntentSink, intent_client_order_id
from services.trading_engine.bots.lifecycle import Command, IllegalTransition
from services.trading_engine.bots.model import Bot, BotConfig, BotState, StrategyName
from services.trading_engine.bots.outbox import publish_pending
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import ADMIN, TRADE
from shared.events import SYMBOL_PATTERN, BotChanged, ExternalId, OrderAttribution
from shared.instruments import instrument
from shared.kit.problems import Problem
from shared.kit.service import state_in

log = logging.getLogger(__name__)


class BotDesk(Protocol):
    """What the bots' routes need from the engine."""

    @property
    def pool(self) -> asyncpg.Pool: ...
    @property
    def intents(self) -> IntentSink: ...

    def now_ns(self) -> int:
        """The engine's clock (ns since the epoch)."""
        ...

    async def account_exists(self, tenant: str, account_id: str) -> bool:
        """Whether the tenant has this trading account."""
        ...

    async def publish(self, event: BotChanged) -> None:
        """Put a ``BotChanged`` on the bus."""
        ...

    async def bot_changed(self, bot: Bot) -> None:
        """The engine's running bots follow: load a started bot, drop a stopped or deleted one."""
        ...


def current_desk(request: Request) -> BotDesk:
    """The running engine's ``bots`` desk."""
    desk = getattr(state_in(request.scope, object), "bots", None)
    if desk is None:  # a wiring bug: a 500 and the log
        raise RuntimeError("the running service's state has no `bots` desk")
    return desk  # type: ignore[no-any-return]


Desk = Annotated[BotDesk, Depends(current_desk)]
Trader = Annotated[Principal, require(TRADE)]
Admin = Annotated[Principal, require(ADMIN)]

router = APIRouter(prefix="/api/v1/bots", tags=["bots"])


class CreateBot(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: ExternalId
    symbol: Annotated[str, Field(pattern=SYMBOL_PATTERN)]
    strategy: StrategyName
    config: BotConfig = Field(default_factory=BotConfig)
    #: Start it at once (created -> running).
    start: bool = False


class StopBot(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Also close the position the bot holds (a market order through the risk gate).
    close_position: bool = False


class PositionView(BaseModel):
    side: Literal["flat", "long", "short"]
    quantity: Decimal
    entry_price: Decimal | None
    stop_level: Decimal | None


class BotView(BaseModel):
    bot_id: uuid.UUID
    tenant: str
    account_id: str
    symbol: str
    strategy: str
    state: BotState
    version: int
    config: BotConfig
    position: PositionView
    bars_seen: int
    last_input_ns: int
    created_ns: int
    updated_ns: int


class AutoView(BaseModel):
    config: AutoConfig
    #: 0 while never set (the default: off).
    version: int


def view(bot: Bot) -> BotView:
    m = bot.memory
    return BotView(
        bot_id=bot.bot_id,
        tenant=bot.tenant,
        account_id=bot.account_id,
        symbol=bot.symbol,
        strategy=bot.strategy,
        state=bot.state,
        version=bot.version,
        config=bot.config,
        position=PositionView(
            side=m.position,
            quantity=m.quantity,
            entry_price=m.entry_price,
            stop_level=None if m.stops is None else m.stops.level,
        ),
        bars_seen=m.bars,
        last_input_ns=m.last_input_ns,
        created_ns=bot.created_ns,
        updated_ns=bot.updated_ns,
    )


# -- auto mode (before /{bot_id}: "auto" is not a bot id) -----------------------------------------


@router.get("/auto", operation_id="bots_auto_get", summary="The tenant's auto mode")
async def get_auto(desk: Desk, principal: Trader) -> AutoView:
    async with desk.pool.acquire() as conn:
        found = await store.get_auto(conn, principal.tenant)
    return AutoView(config=AutoConfig(), version=0) if found is None else AutoView(config=found[0], version=found[1])


@router.put("/auto", operation_id="bots_auto_put", summary="Change the tenant's auto mode (scope admin)")
async def put_auto(config: AutoConfig, desk: Desk, principal: Admin) -> AutoView:
    if config.enabled and config.account_id is None:
        raise Problem(422, "account_id: an enabled auto mode needs the account its bots trade")
    if config.account_id is not None and not await desk.account_exists(principal.tenant, config.account_id):
        raise Problem(422, f"account_id: no account {config.account_id} in this tenant")
    for symbol in config.allowed_symbols or ():
        if instrument(symbol) is None:
            raise Problem(422, f"allowed_symbols: {symbol} is not a symbol the platform trades")
    async with desk.pool.acquire() as conn:
        version = await store.put_auto(conn, principal.tenant, config, principal.subject, desk.now_ns())
    return AutoView(config=config, version=version)


# -- bots ---------------------------------------------------------------------------------------


@router.post("", status_code=201, operation_id="bots_create", summary="Create a bot (optionally started)")
async def create_bot(body: CreateBot, desk: Desk, principal: Trader) -> BotView:
    if instrument(body.symbol) is None:
        raise Problem(422, f"symbol: {body.symbol} is not a symbol the platform trades")
    if not await desk.account_exists(principal.tenant, body.account_id):
        raise Problem(422, f"account_id: no account {body.account_id} in this tenant")
    now = desk.now_ns()
    bot = Bot(
        bot_id=uuid.uuid4(),
        tenant=principal.tenant,
        account_id=body.account_id,
        symbol=body.symbol,
        strategy=body.strategy,
        config=body.config,
        created_ns=now,
        updated_ns=now,
    )
    async with desk.pool.acquire() as conn, conn.transaction():
        try:
            await store.insert_bot(conn, bot, principal.subject)
        except store.BotExists as exc:
            raise Problem(409, str(exc)) from None
        if body.start:
            before = lifecycle.apply(bot, "start", now)
            await store.save_transition(conn, bot, before, principal.subject)
    await _after_change(desk, bot)
    return view(bot)


@router.get("", operation_id="bots_list", summary="The tenant's bots")
async def list_bots(
    desk: Desk,
    principal: Trader,
    state: Annotated[BotState | None, Query(description="only bots in this state")] = None,
) -> list[BotView]:
    async with desk.pool.acquire() as conn:
        bots = await store.list_bots(conn, principal.tenant, states=None if state is None else (state,))
    return [view(b) for b in bots]


@router.get("/{bot_id}", operation_id="bots_get", summary="One bot")
async def get_bot(bot_id: uuid.UUID, desk: Desk, principal: Trader) -> BotView:
    async with desk.pool.acquire() as conn:
        bot = await store.get_bot(conn, principal.tenant, bot_id)
    if bot is None:
        raise Problem(404, f"no bot {bot_id}")
    return view(bot)


class TransitionView(BaseModel):
    version: int
    from_state: BotState | None
    to_state: BotState
    actor: str
    ts_ns: int


@router.get("/{bot_id}/history", operation_id="bots_history", summary="Every version of a bot")
async def bot_history(bot_id: uuid.UUID, desk: Desk, principal: Trader) -> list[TransitionView]:
    async with desk.pool.acquire() as conn:
        if await store.get_bot(conn, principal.tenant, bot_id) is None:
            raise Problem(404, f"no bot {bot_id}")
        rows = await store.history(conn, bot_id)
    return [TransitionView(**row) for row in rows]


@router.post("/{bot_id}/start", operation_id="bots_start", summary="Start a created bot")
async def start_bot(bot_id: uuid.UUID, desk: Desk, principal: Trader) -> BotView:
    return await _command(desk, principal, bot_id, "start")


@router.post("/{bot_id}/pause", operation_id="bots_pause", summary="Pause a running bot (its stops stay armed)")
async def pause_bot(bot_id: uuid.UUID, desk: Desk, principal: Trader) -> BotView:
    return await _command(desk, principal, bot_id, "pause")


@router.post("/{bot_id}/resume", operation_id="bots_resume", summary="Resume a paused bot")
async def resume_bot(bot_id: uuid.UUID, desk: Desk, principal: Trader) -> BotView:
    return await _command(desk, principal, bot_id, "resume")


@router.post("/{bot_id}/stop", operation_id="bots_stop", summary="Stop a bot (optionally closing its position)")
async def stop_bot(bot_id: uuid.UUID, desk: Desk, principal: Trader, body: StopBot | None = None) -> BotView:
    return await _command(desk, principal, bot_id, "stop", close_position=body is not None and body.close_position)


@router.delete("/{bot_id}", operation_id="bots_delete", summary="Delete a bot that is not running")
async def delete_bot(bot_id: uuid.UUID, desk: Desk, principal: Trader) -> BotView:
    return await _command(desk, principal, bot_id, "delete")


async def _command(
    desk: BotDesk, principal: Principal, bot_id: uuid.UUID, command: Command, *, close_position: bool = False
) -> BotView:
    async with desk.pool.acquire() as conn, conn.transaction():
        bot = await store.lock_bot(conn, principal.tenant, bot_id)
        if bot is None:
            raise Problem(404, f"no bot {bot_id}")
        try:
            before = lifecycle.apply(bot, command, desk.now_ns())
        except IllegalTransition as exc:
            raise Problem(409, str(exc)) from None
        if close_position and bot.memory.quantity > 0:
            # Before the commit: if the engine refuses, the bot is not stopped and the call can be
            # repeated; the client order id (bot and version) makes a repeat the same order.
            await desk.intents.submit(_closing(bot))
        await store.save_transition(conn, bot, before, principal.subject)
    await _after_change(desk, bot)
    return view(bot)


def _closing(bot: Bot) -> Intent:
    m = bot.memory
    return Intent(
        bot_id=bot.bot_id,
        tenant=bot.tenant,
        account_id=bot.account_id,
        symbol=bot.symbol,
        action="close",
        side="sell" if m.position == "long" else "buy",
        quantity=m.quantity,
        reason="bot stopped with close_position",
        client_order_id=intent_client_order_id(bot.bot_id, f"stop-bot|{bot.version}"),
        stop_loss=None,
        attribution=OrderAttribution(bot_id=bot.bot_id, strategy=bot.strategy),
    )


async def _after_change(desk: BotDesk, bot: Bot) -> None:
    await desk.bot_changed(bot)
    try:
        await publish_pending(desk.pool, desk.publish, desk.now_ns())
    except Exception:  # committed: the history row is the outbox, published again by the engine's retry
        log.warning("BotChanged of bot %s not published yet; the outbox retry will", bot.bot_id, exc_info=True)
