"""HttpBarHistory against database-service's bars API as it answers (a stand-in app speaking its
format: ``[{"ts": "...Z", "open": ..., ...}]``, from ``start`` forward, at most ``limit``)."""

from __future__ import annotations

import datetime as dt

import httpx

from services.feature_engineering.history import HttpBarHistory
from shared.events import Timeframe
from tests.services.feature_engineering.support import make_bars

BARS = make_bars("EURUSD", 23)


def parse(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()) * 10**9


def bars_api(request: httpx.Request) -> httpx.Response:
    assert request.url.path == "/api/v1/market/bars"
    q = request.url.params
    assert q["symbol"] == "EURUSD" and q["timeframe"] == "M1"
    start, end, limit = parse(q["start"]), parse(q["end"]), int(q["limit"])
    rows = [b for b in BARS if start <= b.ts_event <= end][:limit]
    return httpx.Response(
        200,
        json=[
            {
                "ts": dt.datetime.fromtimestamp(b.ts_event // 10**9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "open": float(b.open), "high": float(b.high), "low": float(b.low), "close": float(b.close),
                "volume": b.volume, "real_volume": 0.0,
            }
            for b in rows
        ],
    )  # fmt: skip


async def test_pages_forward_and_parses_the_bars_api() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return bars_api(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        history = HttpBarHistory(client, "http://database-service", page=5, timeout_s=1.0)
        got = await history.bars("EURUSD", Timeframe.M1, BARS[2].ts_event, BARS[20].ts_event)
    assert [b.ts_event for b in got] == [b.ts_event for b in BARS[2:21]]
    assert [b.close for b in got] == [float(b.close) for b in BARS[2:21]]
    assert len(calls) == 4  # 5 + 5 + 5 + 4


async def test_a_refusal_is_an_error() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(401))) as client:
        history = HttpBarHistory(client, "http://database-service", page=5, timeout_s=1.0)
        try:
            await history.bars("EURUSD", Timeframe.M1, BARS[0].ts_event, BARS[3].ts_event)
        except httpx.HTTPStatusError as exc:
            assert exc.response.status_code == 401
        else:
            raise AssertionError("a 401 must not read as 'no stored bars'")
