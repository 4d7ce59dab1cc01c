"""performance-analytics starts on the template: ready, its contract held, its API answering."""

from __future__ import annotations

import httpx

from services.performance_analytics.service import SERVICE
from shared.settings import PlatformSettings


async def test_it_starts_and_answers(tmp_path):
    app = SERVICE.create_app(platform=PlatformSettings(hats_var_dir=tmp_path))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://performance-analytics") as http:
            assert (await http.get("/readyz")).status_code == 200
            assert (await http.get("/contract")).json()["unused"] == []
            assert (await http.get("/api/v1/performance/about")).json() == {"service": "performance-analytics"}
