"""The bars read answered from memory without FastAPI's routing and dependency machinery.

``GET /api/v1/market/bars`` is the platform's hottest read (every chart and strategy
polls it). Through FastAPI, parameter validation and the auth dependency cost about
as much as everything else the request does. This ASGI middleware answers the common
case itself: a valid bearer token with ``market:read``, plain parameters (``symbol``,
``timeframe``, ``limit``; no ``start``/``end``), and a series the memory window can
answer. Anything else (no or bad token, odd parameters, a ClickHouse read) goes on to
the FastAPI route, which stays the one definition of the endpoint: its validation,
its errors, its OpenAPI entry. ``tests/services/database_service/test_bars_fast_path.py``
holds the two to the same answers.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from services.database_service.repository import render_bars
from services.database_service.state import MarketData
from shared import compat
from shared.auth.bearer import AmbiguousAuthorization, authorization_of, bearer_token
from shared.auth.principal import InvalidToken
from shared.auth.scopes import MARKET_READ
from shared.events import SYMBOL_PATTERN_PY, Timeframe
from shared.kit.app import RouteLabel, ServiceApp, claim_route
from shared.kit.service import state_in

PATH = "/api/v1/market/bars"
_SYMBOL = re.compile(SYMBOL_PATTERN_PY)
_TIMEFRAMES = {tf.value: tf for tf in Timeframe}
_PLAIN_LIMIT = re.compile(r"[1-9][0-9]{0,5}\Z")
_HEADERS = [(b"content-type", b"application/json")]
_ROUTE = RouteLabel(PATH)


class BarsFastPath:
    """ASGI middleware: answers ``GET /api/v1/market/bars`` from the cache when it simply can."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "GET":
            body = await self._answer(scope)
            if body is not None:
                claim_route(scope, _ROUTE)
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: dict) -> bytes | None:
        market = state_in(scope, MarketData)
        verifier = getattr(scope.get("app"), "token_verifier", None)
        if market is None or verifier is None:
            return None
        try:
            token = bearer_token(authorization_of(scope["headers"]))
        except AmbiguousAuthorization:
            return None  # the kit's RequestGuard, inside, refuses it
        if token is None:
            return None
        params = _plain_params(scope.get("query_string", b""), market.settings.max_bars_per_request)
        if params is None:
            return None
        try:
            principal = await verifier.verify(token)
        except InvalidToken:
            return None
        if MARKET_READ not in principal.scopes:
            return None
        rows = market.cache.get(params[:2], start_ms=None, end_ms=None, limit=params[2])
        if rows is None:
            return None
        return render_bars(rows)


def _plain_params(query: bytes, max_limit: int) -> tuple[str, Timeframe, int] | None:
    """``(symbol, timeframe, limit)`` if the query is exactly the simple form, else None."""
    symbol, timeframe, limit = None, Timeframe.M1, 100
    try:
        pairs = parse_qsl(query.decode("ascii"), keep_blank_values=True, strict_parsing=True) if query else []
    except (UnicodeDecodeError, ValueError):
        return None
    seen = set()
    for key, value in pairs:
        if key in seen:
            return None
        seen.add(key)
        if key == "symbol" and _SYMBOL.match(value):
            symbol = value
        elif key == "timeframe" and value in _TIMEFRAMES:
            timeframe = _TIMEFRAMES[value]
        elif key == "limit" and _PLAIN_LIMIT.match(value) and int(value) <= max_limit:
            limit = int(value)
        else:
            return None
    return None if symbol is None else (symbol, timeframe, limit)


def install_bars_fast_path(app: ServiceApp, _: object = None) -> None:
    """Put the fast path in front of the routes (innermost, like a route: the metrics, the
    server span and the error handlers wrap it). Call before the app starts."""
    compat.add_innermost_middleware(app, BarsFastPath)
