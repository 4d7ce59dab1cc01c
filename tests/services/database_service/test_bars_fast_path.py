"""The bars fast path answers only the simple case, exactly as the FastAPI route would; all else goes on."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any, cast

import pytest

from services.database_service.bars_fast_path import BarsFastPath
from services.database_service.cache import BarCache
from services.database_service.repository import BarRow, render_bars
from services.database_service.settings import DatabaseServiceSettings
from services.database_service.state import MarketData
from shared.auth.principal import InvalidToken, Principal
from shared.auth.scopes import MARKET_READ, MARKET_WRITE
from shared.events import Timeframe

ROWS = [
    BarRow(60_000 * i, Decimal("1.1"), Decimal("1.2"), Decimal("1.0"), Decimal("1.15"), 10 + i, Decimal(0))
    for i in range(300)
]


class Verifier:
    async def verify(self, token: str) -> Principal:
        scopes = {"reader": {MARKET_READ}, "writer": {MARKET_WRITE}}.get(token)
        if scopes is None:
            raise InvalidToken("signature")
        return Principal("sub", "client", "tenant", frozenset(scopes), "jti", 2**31)


def _app() -> SimpleNamespace:
    """What the fast path reads of the app: the running service's state and the token verifier."""
    cache = BarCache(5000)
    cache.load(("EURUSD", Timeframe.M1), ROWS)
    cache.caught_up = True
    assert cache.get(("EURUSD", Timeframe.M1), start_ms=None, end_ms=None, limit=1) is not None
    market = MarketData(DatabaseServiceSettings(max_bars_per_request=5000), repo=cast(Any, None), cache=cache)
    return SimpleNamespace(runtime=SimpleNamespace(started=True, state=market), token_verifier=Verifier())


async def _call(query: bytes, token: str | None = "reader", method: str = "GET", path: str = "/api/v1/market/bars"):
    passed_on, sent = [], []

    async def route(scope, receive, send):
        passed_on.append(scope)

    async def send(message):
        sent.append(message)

    headers = [(b"authorization", b"Bearer " + token.encode())] if token else []
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": headers,
        "app": _app(),
    }
    await BarsFastPath(route)(scope, None, send)
    return (None if passed_on else b"".join(m.get("body", b"") for m in sent)), sent


@pytest.mark.parametrize(
    "query, limit, timeframe",
    [
        (b"symbol=EURUSD", 100, "M1"),
        (b"symbol=EURUSD&timeframe=M1&limit=5", 5, "M1"),
        (b"limit=300&symbol=EURUSD", 300, "M1"),
        (b"symbol=EURUSD&limit=5000", 5000, "M1"),
    ],
)
async def test_the_simple_read_is_answered_as_the_route_renders_it(query, limit, timeframe):
    body, sent = await _call(query)
    expected = render_bars(ROWS[-limit:])
    assert body == expected
    start = sent[0]
    assert start["status"] == 200 and (b"content-length", str(len(expected)).encode()) in start["headers"]


@pytest.mark.parametrize(
    "query, token",
    [
        (b"symbol=EURUSD", None),  # no token: the route's 401
        (b"symbol=EURUSD", "forged"),  # invalid token: the route's 401 with its reason
        (b"symbol=EURUSD", "writer"),  # wrong scope: the route's 403
        (b"", "reader"),  # symbol missing: 422
        (b"symbol=eurusd", "reader"),  # pattern: 422
        (b"symbol=EURUSD%0A", "reader"),
        (b"symbol=EURUSD\n", "reader"),
        (b"symbol=EURUSD&limit=0", "reader"),
        (b"symbol=EURUSD&limit=5001", "reader"),
        (b"symbol=EURUSD&limit=+5", "reader"),
        (b"symbol=EURUSD&limit=05", "reader"),
        (b"symbol=EURUSD&timeframe=M2", "reader"),
        (b"symbol=EURUSD&symbol=GBPUSD", "reader"),
        (b"symbol=EURUSD&start=2026-01-01T00:00:00Z", "reader"),  # ranges: the route
        (b"symbol=EURUSD&extra=1", "reader"),
        (b"symbol=EURUSD&&", "reader"),
        (b"symbol=%FF", "reader"),
        (b"symbol=GBPUSD", "reader"),  # not in memory: the route reads ClickHouse
        (b"symbol=EURUSD&timeframe=H1", "reader"),
    ],
)
async def test_everything_else_goes_on_to_the_route(query, token):
    body, _ = await _call(query, token)
    assert body is None


async def test_other_paths_and_methods_go_on():
    assert (await _call(b"symbol=EURUSD", method="HEAD"))[0] is None
    assert (await _call(b"symbol=EURUSD", path="/api/v1/market/symbols"))[0] is None
