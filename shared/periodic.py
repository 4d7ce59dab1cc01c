"""A step run forever at a fixed pause, surviving its own failures (a background task's body)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any


async def every(
    seconds: float,
    step: Callable[[], Awaitable[Any]],
    *,
    log: logging.Logger,
    what: str,
    at_once: bool = True,
    level: int = logging.ERROR,
) -> None:
    """Run ``step`` every ``seconds`` (first at once, or after the first pause); a failure is logged
    at ``level`` with its traceback and the next round comes as usual. Cancel to stop."""
    if not at_once:
        await asyncio.sleep(seconds)
    while True:
        try:
            await step()
        except Exception:  # the step's source or store is away: next round
            log.log(level, "%s failed", what, exc_info=True)
        await asyncio.sleep(seconds)
