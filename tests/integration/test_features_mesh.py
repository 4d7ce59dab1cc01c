"""feature-engineering in the mesh: the gateway routes ``/api/v1/features`` to it, and it verifies
the caller's token itself."""

from __future__ import annotations

import httpx


async def test_compute_through_the_gateway(mesh, http) -> None:
    body = {
        "open": [1.0, 2.0, 3.0, 4.0],
        "high": [1.5, 2.5, 3.5, 4.5],
        "low": [0.5, 1.5, 2.5, 3.5],
        "close": [1.2, 2.2, 3.2, 4.2],
        "volume": [10, 20, 30, 40],
        "indicators": [{"name": "SMA", "params": {"timeperiod": 2}}],
    }
    r = await http.post(mesh.url("api-gateway") + "/api/v1/features/compute", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["indicators"][0]["outputs"]["real"] == [None, 1.7000000000000002, 2.7, 3.7]
    async with httpx.AsyncClient() as anonymous:  # the service's own port wants a token too
        direct = await anonymous.post(mesh.url("feature-engineering") + "/api/v1/features/compute", json=body)
    assert direct.status_code == 401
