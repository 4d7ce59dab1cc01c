"""The bots' tables (``migrations/postgres/020_bots.sql``): functions on the caller's connection, so a
lifecycle change and its history row (the outbox of its ``BotChanged``) commit together.

    async with pool.acquire() as conn, conn.transaction():
        bot = await store.lock_bot(conn, tenant, bot_id)
        before = lifecycle.apply(bot, "start", now)
        await store.save_transition(conn, bot, before, actor)
    # after the commit: publish store.pending_events(...), then store.mark_published(...)
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from services.trading_engine.bots.auto import AutoConfig
from services.trading_engine.bots.lifecycle import changed_event
from services.trading_engine.bots.memory import BotMemory
from services.trading_engine.bots.model import Bot, BotConfig, BotState
from shared.events import BotChanged

_COLUMNS = "bot_id, tenant, account_id, symbol, strategy, config, state, version, memory, created_ns, updated_ns"
ACTIVE: tuple[BotState, ...] = ("created", "running", "paused")


class BotExists(Exception):
    """An active bot already holds this symbol on this account (a 409 at the API)."""


class ConcurrentChange(Exception):
    """The bot changed since it was read (its version moved): read it again."""


async def insert_bot(conn: asyncpg.Connection, bot: Bot, actor: str) -> None:
    """Store a new bot (version 1) and its first history row; ``BotExists`` if its pair is taken."""
    try:
        async with conn.transaction():
            await conn.execute(
                f"INSERT INTO trading.bots ({_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9::jsonb, $10, $11)",
                bot.bot_id,
                bot.tenant,
                bot.account_id,
                bot.symbol,
                bot.strategy,
                bot.config.model_dump_json(),
                bot.state,
                bot.version,
                json.dumps(bot.memory.to_json()),
                bot.created_ns,
                bot.updated_ns,
            )
            await _history(conn, bot, None, actor)
    except asyncpg.UniqueViolationError as exc:
        raise BotExists(f"an active bot already trades {bot.symbol} on account {bot.account_id}") from exc


async def get_bot(conn: asyncpg.Connection, tenant: str, bot_id: uuid.UUID) -> Bot | None:
    """The tenant's bot (``None``: no such bot, another tenant's, or deleted)."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM trading.bots WHERE bot_id = $1 AND tenant = $2 AND state <> 'deleted'",
        bot_id,
        tenant,
    )
    return None if row is None else _bot(row)


async def lock_bot(conn: asyncpg.Connection, tenant: str, bot_id: uuid.UUID) -> Bot | None:
    """``get_bot`` holding the row until the transaction ends (serialises changes of one bot)."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM trading.bots WHERE bot_id = $1 AND tenant = $2 AND state <> 'deleted' FOR UPDATE",
        bot_id,
        tenant,
    )
    return None if row is None else _bot(row)


async def list_bots(
    conn: asyncpg.Connection, tenant: str, *, states: tuple[BotState, ...] | None = None, limit: int = 500
) -> list[Bot]:
    """The tenant's bots, oldest first (deleted ones only when ``states`` asks for them)."""
    wanted = list(states) if states is not None else ["created", "running", "paused", "stopped"]
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM trading.bots WHERE tenant = $1 AND state = ANY($2::text[]) "
        "ORDER BY created_ns, bot_id LIMIT $3",
        tenant,
        wanted,
        limit,
    )
    return [_bot(r) for r in rows]


async def active_bots(conn: asyncpg.Connection) -> list[Bot]:
    """Every tenant's created, running and paused bots (what the engine loads at start)."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM trading.bots WHERE state = ANY($1::text[]) ORDER BY created_ns, bot_id", list(ACTIVE)
    )
    return [_bot(r) for r in rows]


async def save_transition(conn: asyncpg.Connection, bot: Bot, before: BotState, actor: str) -> None:
    """Store the bot's new state and version (it was ``version - 1``) and its history row. The memory
    is not written: the engine's running bot owns it (``save_memory``), and a lifecycle change read
    it earlier than the engine's newest."""
    done = await conn.execute(
        "UPDATE trading.bots SET state = $2, version = $3, updated_ns = $4 WHERE bot_id = $1 AND version = $5",
        bot.bot_id,
        bot.state,
        bot.version,
        bot.updated_ns,
        bot.version - 1,
    )
    if done != "UPDATE 1":
        raise ConcurrentChange(f"bot {bot.bot_id} is no longer at version {bot.version - 1}")
    await _history(conn, bot, before, actor)


async def save_memory(conn: asyncpg.Connection, bot: Bot) -> None:
    """Store the bot's memory (after each input it processed; its lifecycle version is unchanged)."""
    await conn.execute(
        "UPDATE trading.bots SET memory = $2::jsonb WHERE bot_id = $1", bot.bot_id, json.dumps(bot.memory.to_json())
    )


async def history(conn: asyncpg.Connection, bot_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every version of a bot, oldest first."""
    rows = await conn.fetch(
        "SELECT version, from_state, to_state, actor, ts_ns FROM trading.bot_transitions WHERE bot_id = $1 "
        "ORDER BY version",
        bot_id,
    )
    return [dict(r) for r in rows]


async def pending_events(conn: asyncpg.Connection, ts_init: int, limit: int = 500) -> list[BotChanged]:
    """``BotChanged`` of the history rows not marked published yet, oldest first."""
    rows = await conn.fetch(
        "SELECT t.bot_id, t.version, t.to_state, t.actor, t.ts_ns, t.config, b.tenant, b.account_id, b.symbol, "
        "b.strategy FROM trading.bot_transitions t JOIN trading.bots b USING (bot_id) "
        "WHERE NOT t.published ORDER BY t.ts_ns, t.bot_id, t.version LIMIT $1",
        limit,
    )
    events = []
    for r in rows:
        bot = Bot(
            bot_id=r["bot_id"],
            tenant=r["tenant"],
            account_id=r["account_id"],
            symbol=r["symbol"],
            strategy=r["strategy"],
            config=BotConfig.model_validate_json(r["config"]),
            state=r["to_state"],
            version=r["version"],
            updated_ns=r["ts_ns"],
        )
        events.append(changed_event(bot, r["actor"], ts_init))
    return events


async def mark_published(conn: asyncpg.Connection, events: list[BotChanged]) -> None:
    await conn.executemany(
        "UPDATE trading.bot_transitions SET published = true WHERE bot_id = $1 AND version = $2",
        [(e.bot_id, e.version) for e in events],
    )


async def get_auto(conn: asyncpg.Connection, tenant: str) -> tuple[AutoConfig, int] | None:
    """The tenant's auto mode and its version (``None``: never set, i.e. off)."""
    row = await conn.fetchrow("SELECT config, version FROM trading.bot_auto_config WHERE tenant = $1", tenant)
    return None if row is None else (AutoConfig.model_validate_json(row["config"]), row["version"])


async def put_auto(conn: asyncpg.Connection, tenant: str, config: AutoConfig, actor: str, now_ns: int) -> int:
    """Store a new version of the tenant's auto mode; returns the version."""
    version: int = await conn.fetchval(
        "INSERT INTO trading.bot_auto_config (tenant, config, version, actor, updated_ns) "
        "VALUES ($1, $2::jsonb, 1, $3, $4) ON CONFLICT (tenant) DO UPDATE SET config = EXCLUDED.config, "
        "version = trading.bot_auto_config.version + 1, actor = EXCLUDED.actor, updated_ns = EXCLUDED.updated_ns "
        "RETURNING version",
        tenant,
        config.model_dump_json(),
        actor,
        now_ns,
    )
    return version


async def _history(conn: asyncpg.Connection, bot: Bot, before: BotState | None, actor: str) -> None:
    await conn.execute(
        "INSERT INTO trading.bot_transitions (bot_id, version, from_state, to_state, actor, ts_ns, config) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
        bot.bot_id,
        bot.version,
        before,
        bot.state,
        actor,
        bot.updated_ns,
        bot.config.model_dump_json(),
    )


def _bot(row: asyncpg.Record) -> Bot:
    return Bot(
        bot_id=row["bot_id"],
        tenant=row["tenant"],
        account_id=row["account_id"],
        symbol=row["symbol"],
        strategy=row["strategy"],
        config=BotConfig.model_validate_json(row["config"]),
        state=row["state"],
        version=row["version"],
        memory=BotMemory.from_json(json.loads(row["memory"])),
        created_ns=row["created_ns"],
        updated_ns=row["updated_ns"],
    )
