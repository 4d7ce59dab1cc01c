"""Polling for conditions that become true asynchronously (a module, so any test can import it)."""

from __future__ import annotations

import asyncio
import time


async def eventually(check, *, timeout_s: float = 30.0, interval_s: float = 0.2):
    """Poll ``check`` (async, returns a truthy value when done) until it holds; return its value."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s (last: {last!r})")
