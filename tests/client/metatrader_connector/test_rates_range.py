"""``GET /api/v1/mt5/rates/range`` against the simulated terminal, its clock fixed on a Wednesday."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from client.metatrader_connector import routes
from client.metatrader_connector.service import SERVICE
from client.metatrader_connector.settings import ConnectorSettings
from client.metatrader_connector.terminal import SimulatedTerminal
from client.metatrader_connector.terminal import constants as c
from shared.kit.service import Overrides
from shared.settings import PlatformSettings

NOW = datetime(2024, 3, 13, 15, 30, 12, tzinfo=UTC).timestamp()  # a Wednesday, mid-bar


@contextlib.asynccontextmanager
async def connector(tmp_path, clock=lambda: NOW) -> AsyncIterator[httpx.AsyncClient]:
    app = SERVICE.create_app(
        platform=PlatformSettings(hats_var_dir=tmp_path),
        settings=ConnectorSettings(mode="simulated"),
        overrides=Overrides(wall_clock=clock),
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://mt5") as client,
    ):
        yield client


def reference(timeframe: int, start: datetime, end: datetime):
    term = SimulatedTerminal(clock=lambda: NOW)
    assert term.initialize()
    return term.copy_rates_range("EURUSD", timeframe, start, end)


async def test_a_range_is_the_terminals_closed_bars_in_chunks_under_maxbars(tmp_path, monkeypatch):
    start, end = datetime(2024, 3, 11, tzinfo=UTC), datetime(2024, 3, 13, 23, tzinfo=UTC)
    expected = reference(c.TIMEFRAME_M1, start, end)
    asked: list[tuple[int, int]] = []
    original = SimulatedTerminal.copy_rates_range

    def spy(self, symbol, timeframe, date_from, date_to):
        asked.append((int(date_from.timestamp()), int(date_to.timestamp())))
        return original(self, symbol, timeframe, date_from, date_to)

    monkeypatch.setattr(SimulatedTerminal, "copy_rates_range", spy)
    monkeypatch.setattr(SimulatedTerminal, "terminal_info", lambda self: _Info(maxbars=500))
    async with connector(tmp_path) as client:
        r = await client.get(
            "/api/v1/mt5/rates/range",
            params={"symbol": "EURUSD", "timeframe": "M1", "from": start.isoformat(), "to": end.isoformat(),
                    "limit": 100_000},
        )  # fmt: skip
    assert r.status_code == 200, r.text
    got = r.json()
    # Every bar the terminal has in the range but the one forming at 15:30 (its last tick is 15:30:11).
    assert [b["time"] for b in got] == [int(t) for t in expected["time"][:-1]]
    assert int(expected["time"][-1]) == int(datetime(2024, 3, 13, 15, 30, tzinfo=UTC).timestamp())
    assert [(Decimal(str(b["open"])), Decimal(str(b["close"]))) for b in got[:3]] == [
        (Decimal(f"{o:.5f}"), Decimal(f"{cl:.5f}"))
        for o, cl in zip(expected["open"][:3], expected["close"][:3], strict=True)
    ]
    assert {b["tick_volume"] for b in got} != {0}
    # Chunks each within maxbars periods of M1, together covering the range without overlap.
    assert len(asked) > 1 and all((b - a) // 60 < 500 for a, b in asked)
    assert asked[0][0] == int(start.timestamp()) and asked[-1][1] == int(end.timestamp())
    assert all(asked[i][1] + 1 == asked[i + 1][0] for i in range(len(asked) - 1))


async def test_pages_of_limit_bars_continue_from_the_last_time(tmp_path):
    start, end = datetime(2024, 3, 12, tzinfo=UTC), datetime(2024, 3, 12, 23, 59, tzinfo=UTC)
    async with connector(tmp_path) as client:
        pages, cursor = [], int(start.timestamp())
        while True:
            r = await client.get(
                "/api/v1/mt5/rates/range",
                params={"symbol": "EURUSD", "timeframe": "M5", "from": cursor, "to": end.isoformat(), "limit": 100},
            )
            assert r.status_code == 200, r.text
            pages.append(r.json())
            if len(pages[-1]) < 100:
                break
            cursor = pages[-1][-1]["time"] + 1
    times = [b["time"] for page in pages for b in page]
    assert len(pages) == 3 and times == [int(t) for t in reference(c.TIMEFRAME_M5, start, end)["time"]]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"timeframe": "M2"}, "timeframe"),
        ({"from": "2024-03-12T00:00:00Z", "to": "2024-03-11T00:00:00Z"}, "to"),
        ({"limit": 0}, "limit"),
        ({"limit": routes.MAX_RANGE_BARS + 1}, "limit"),
        ({"from": "yesterday"}, "from"),
        ({"symbol": "eur usd"}, "symbol"),
    ],
)
async def test_bad_parameters_get_a_422_naming_them(tmp_path, params, named):
    query = {"symbol": "EURUSD", "timeframe": "H1", "from": "2024-03-11T00:00:00Z", "to": "2024-03-12T00:00:00Z"}
    async with connector(tmp_path) as client:
        r = await client.get("/api/v1/mt5/rates/range", params={**query, **params})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"].split(":")[0].split(".")[-1] == named


class _Info:
    def __init__(self, maxbars: int) -> None:
        self.maxbars = maxbars
        self.connected = True
