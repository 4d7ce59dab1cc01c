"""The bots' ``BotChanged`` outbox: the history rows not published yet, published and marked.

A lifecycle change commits its history row with it; publishing follows the commit (the routes and
the auto mode call this at once, the engine periodically as the retry). A crash between publishing
and marking publishes the row again: the same event id, which consumers already handle idempotently.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from services.trading_engine.bots import store
from shared.events import BotChanged


async def publish_pending(
    pool: asyncpg.Pool, publish: Callable[[BotChanged], Awaitable[object]], now_ns: int, limit: int = 500
) -> int:
    """Publish up to ``limit`` pending ``BotChanged`` events, oldest first; how many."""
    async with pool.acquire() as conn:
        events = await store.pending_events(conn, now_ns, limit)
        for event in events:
            await publish(event)
        await store.mark_published(conn, events)
    return len(events)
