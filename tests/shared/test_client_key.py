"""The client tier's API key (``shared.kit.client_key``): required off loopback, checked on every request."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from shared.kit.app import build_app
from shared.kit.client_key import HEADER, client_key_headers, is_loopback
from shared.settings import PlatformSettings
from tests.support import serve

KEY = "k3y-of-the-client-tier"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "trader-pc.lan"])
def test_the_client_tier_off_loopback_refuses_to_start_without_a_key(tmp_path, host):
    settings = PlatformSettings(hats_var_dir=tmp_path, hats_bind_host=host)
    with pytest.raises(RuntimeError, match="HATS_CLIENT_API_KEY"):
        build_app("metatrader-connector", settings=settings)
    build_app("api-gateway", settings=settings)  # the server side authenticates with tokens instead


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_needs_no_key(tmp_path, host):
    assert is_loopback(host)
    build_app("data-collector", settings=PlatformSettings(hats_var_dir=tmp_path, hats_bind_host=host))


async def test_with_a_key_every_request_but_healthz_must_carry_it(tmp_path):
    settings = PlatformSettings(hats_var_dir=tmp_path, hats_bind_host="0.0.0.0", hats_client_api_key=SecretStr(KEY))
    app = build_app("metatrader-connector", settings=settings)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/healthz")).status_code == 200
        for headers in ({}, {HEADER: "wrong"}, {HEADER: KEY + "x"}, {"Authorization": f"Bearer {KEY}"}):
            refused = await http.get("/readyz", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["content-type"] == "application/problem+json"
        assert (await http.get("/readyz", headers=client_key_headers(settings))).status_code == 200
        assert (await http.get("/openapi.json", headers={HEADER: KEY})).status_code == 200


def test_without_a_key_the_client_tier_sends_none(tmp_path):
    assert client_key_headers(PlatformSettings(hats_var_dir=tmp_path)) == {}
