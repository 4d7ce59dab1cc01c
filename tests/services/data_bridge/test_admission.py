"""Backpressure at the ingest edge: beyond the in-flight limit, 503 with Retry-After at once, nothing handled."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry

from services.data_bridge.admission import INGEST_PATH, InflightLimit
from services.data_bridge.service import SERVICE
from services.data_bridge.settings import DataBridgeSettings
from tests.support import serve


def slow_ingest() -> tuple[FastAPI, list[bytes], asyncio.Event]:
    """An ingest route that records what it handled and answers once released."""
    app = FastAPI()
    handled: list[bytes] = []
    release = asyncio.Event()

    @app.post(INGEST_PATH)
    async def ingest(request: Request) -> Response:
        handled.append(await request.body())
        await release.wait()
        return Response(status_code=202)

    return app, handled, release


async def test_beyond_the_limit_requests_get_503_with_retry_after_and_are_not_handled() -> None:
    app, handled, release = slow_ingest()
    app.add_middleware(InflightLimit, path=INGEST_PATH, limit=2, retry_after_s=3, registry=CollectorRegistry())
    async with serve(app, lifespan="off") as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        first = [asyncio.create_task(http.post(INGEST_PATH, content=f"batch {i}")) for i in range(2)]
        while len(handled) < 2:
            await asyncio.sleep(0.01)
        refused = await http.post(INGEST_PATH, content="batch 2")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "3"
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["status"] == 503 and "retry" in refused.json()["detail"]
        assert handled == [b"batch 0", b"batch 1"]

        assert (await http.get("/docs")).status_code == 200  # other paths are not counted
        release.set()
        assert [r.status_code for r in await asyncio.gather(*first)] == [202, 202]
        assert (await http.post(INGEST_PATH, content="batch 3")).status_code == 202  # room again
        assert handled[-1] == b"batch 3"


def test_data_bridge_installs_the_limit_from_its_settings() -> None:
    app = SERVICE.create_app(settings=DataBridgeSettings(max_inflight_requests=3, inflight_retry_after_s=2))
    [limit] = [m for m in app.user_middleware if m.cls is InflightLimit]
    assert limit.kwargs["limit"] == 3 and limit.kwargs["retry_after_s"] == 2 and limit.kwargs["path"] == INGEST_PATH
