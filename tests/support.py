"""Helpers any test can import (a module, unlike conftest.py): polling, and tokens from the gateway."""

from __future__ import annotations

import asyncio
import time

import httpx


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


async def client_token(gateway: str, client_id: str, client_secret: str, scope: str | None = None) -> str:
    """An access token for a client, from the gateway's token endpoint (client credentials)."""
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    async with httpx.AsyncClient(timeout=30.0) as client:
        r = await client.post(gateway + "/oauth2/token", data=form, auth=(client_id, client_secret))
    assert r.status_code == 200, r.text
    return r.json()["access_token"]
