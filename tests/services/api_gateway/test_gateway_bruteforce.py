"""Lockout after repeated failed client authentications, and a user-service that is down or hangs."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from gateway_harness import SLOW_CLIENT_DELAY_S, assert_error, basic, bound_socket, running_gateway, token_for

from services.api_gateway.settings import GatewaySettings

pytestmark = pytest.mark.timeout(120)

LOCKOUT_S = 2.0


@pytest.fixture(scope="module")
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(
        auth_failures_per_client=3, auth_failures_per_ip=5, auth_failure_window_s=60, auth_lockout_s=LOCKOUT_S
    )


def from_address(gateway, address: str) -> httpx.AsyncClient:
    """A client whose requests come from ``address`` (any 127.0.0.0/8 address is loopback on Linux)."""
    return httpx.AsyncClient(
        base_url=gateway.url, timeout=10.0, transport=httpx.AsyncHTTPTransport(local_address=address)
    )


async def test_client_id_is_locked_out_from_the_guessing_address_only(gateway):
    async with from_address(gateway, "127.0.0.11") as http:
        for _ in range(3):
            response = await http.post(
                "/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("alpha", "guess")
            )
            assert_error(response, 401, "invalid_client")
        calls = gateway.users.calls
        # From the guessing address, even the right secret is refused now, without asking user-service.
        response = await http.post("/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("alpha"))
        body = assert_error(response, 429, "temporarily_unavailable")
        assert "too many" in body["error_description"]
        assert 1 <= int(response.headers["retry-after"]) <= LOCKOUT_S
        assert gateway.users.calls == calls
        response = await http.post("/oauth2/introspect", data={"token": "x"}, headers=basic("alpha"))
        assert_error(response, 429, "temporarily_unavailable")
        # Another client from the same address is not affected (3 failures < 5 per address).
        assert (await token_for(http, "charlie"))["access_token"]
    # Client ids are not secret: failures from one address must not lock the client out elsewhere,
    # or anyone could shut any client (the bootstrap admin, the collector) out by its id.
    async with from_address(gateway, "127.0.0.12") as http:
        assert (await token_for(http, "alpha"))["access_token"]
        response = await http.post("/oauth2/introspect", data={"token": "x"}, headers=basic("alpha"))
        assert response.status_code == 200, response.text
    async with from_address(gateway, "127.0.0.11") as http:
        deadline = time.monotonic() + LOCKOUT_S + 2
        while True:
            response = await http.post(
                "/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("alpha")
            )
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert response.status_code == 200, response.text  # the cool-down is over


async def test_failures_spread_over_addresses_lock_no_one_out(gateway):
    """An attacker cycling addresses to lock a client out: each address stays under its own limits."""
    for i in range(4):
        async with from_address(gateway, f"127.0.0.{40 + i}") as http:
            for _ in range(2):
                response = await http.post(
                    "/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("bravo", "guess")
                )
                assert_error(response, 401, "invalid_client")
    async with from_address(gateway, "127.0.0.50") as http:
        assert (await token_for(http, "bravo"))["access_token"]


async def test_address_is_locked_out_after_repeated_failures(gateway):
    async with from_address(gateway, "127.0.0.21") as http:
        for i in range(5):
            response = await http.post(
                "/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic(f"nobody-{i}", "guess")
            )
            assert_error(response, 401, "invalid_client")
        calls = gateway.users.calls
        response = await http.post("/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("root"))
        assert_error(response, 429, "temporarily_unavailable")
        assert int(response.headers["retry-after"]) >= 1
        assert gateway.users.calls == calls
    async with from_address(gateway, "127.0.0.22") as http:
        assert (await token_for(http, "root"))["access_token"]


async def test_user_service_down_is_503_quickly(infra_env):
    closed = bound_socket()  # bound, never listening: connections are refused
    try:
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        async with (
            running_gateway(infra_env, GatewaySettings(), user_service_url=url) as gw,
            httpx.AsyncClient(base_url=gw.url, timeout=10.0) as http,
        ):
            for _ in range(12):  # more than the brute-force limits: an outage is not a failed login
                started = time.monotonic()
                response = await http.post(
                    "/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("alpha")
                )
                assert time.monotonic() - started < 3.0
                body = assert_error(response, 503, "temporarily_unavailable")
                assert "unavailable" in body["error_description"]
                assert int(response.headers["retry-after"]) >= 1
            # Discovery does not depend on user-service.
            assert (await http.get("/.well-known/jwks.json")).status_code == 200
    finally:
        closed.close()


async def test_user_service_hanging_is_503_within_the_timeout(gateway):
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10.0) as http:
        started = time.monotonic()
        response = await http.post(
            "/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("slowpoke")
        )
        elapsed = time.monotonic() - started
    assert_error(response, 503, "temporarily_unavailable")
    assert elapsed < 3.0 < SLOW_CLIENT_DELAY_S
