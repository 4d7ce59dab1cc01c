"""``hats serve``'s uvicorn believes X-Forwarded-For only from configured proxies (none by default)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI, Request

from shared.kit.runner import server_config
from shared.settings import PlatformSettings
from tests.support import bound_socket, url_of


def whoami() -> FastAPI:
    app = FastAPI()

    @app.get("/whoami")
    async def answer(request: Request) -> dict:
        assert request.client is not None
        return {"host": request.client.host, "scheme": request.url.scheme}

    return app


async def caller_as_seen(settings: PlatformSettings, headers: dict[str, str]) -> dict:
    """Serve ``whoami`` with the config ``hats serve`` builds and ask it from 127.0.0.1."""
    import uvicorn

    sock = bound_socket()
    # The test's event loop and no lifespan: the rest is what `hats serve` runs with.
    server = uvicorn.Server(server_config(whoami(), settings, loop="none", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=url_of(sock)) as http:
            return (await http.get("/whoami", headers=headers)).json()
    finally:
        server.should_exit = True
        await task
        sock.close()


SPOOF = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}


async def test_by_default_the_peer_address_counts_even_from_loopback(tmp_path):
    seen = await caller_as_seen(PlatformSettings(hats_var_dir=tmp_path), SPOOF)
    assert seen == {"host": "127.0.0.1", "scheme": "http"}


@pytest.mark.parametrize("trusted", [("127.0.0.1",), ("127.0.0.0/8",)])
async def test_a_configured_proxy_is_believed(tmp_path, trusted):
    seen = await caller_as_seen(PlatformSettings(hats_var_dir=tmp_path, hats_trusted_proxies=trusted), SPOOF)
    assert seen == {"host": "6.6.6.6", "scheme": "https"}


async def test_another_proxy_is_not(tmp_path):
    seen = await caller_as_seen(PlatformSettings(hats_var_dir=tmp_path, hats_trusted_proxies=("10.0.0.7",)), SPOOF)
    assert seen["host"] == "127.0.0.1"


def test_the_setting_reads_a_json_list(monkeypatch, tmp_path):
    monkeypatch.setenv("HATS_TRUSTED_PROXIES", '["10.0.0.7", "10.1.0.0/16"]')
    assert PlatformSettings(hats_var_dir=tmp_path).hats_trusted_proxies == ("10.0.0.7", "10.1.0.0/16")
