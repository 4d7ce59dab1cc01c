"""Finding 16: a valid client cannot make the gateway mint (and store) tokens without bound."""

from __future__ import annotations

import pytest
from gateway_harness import assert_error, basic, token_for

from services.api_gateway.settings import GatewaySettings

QUOTA = 3


@pytest.fixture(scope="module")
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(
        auth_failures_per_client=1000,
        auth_failures_per_ip=1000,
        token_requests_per_client=QUOTA,
        token_request_window_s=60,
    )


async def test_successful_token_requests_are_limited_per_client(client):
    first = await token_for(client, "bravo")  # a refresh-capable client: each grant stores rows
    refreshed = await client.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        headers=basic("bravo"),
    )
    assert refreshed.status_code == 200, refreshed.text  # refreshes count too
    await token_for(client, "bravo")
    over = await client.post("/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("bravo"))
    body = assert_error(over, 429, "temporarily_unavailable")
    assert "too many token requests" in body["error_description"]
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert over.headers["cache-control"] == "no-store"
    # The quota is the client's own: another client is served.
    assert (await token_for(client, "charlie"))["access_token"]


async def test_failed_authentications_do_not_use_the_quota(client):
    for _ in range(QUOTA + 2):
        response = await client.post(
            "/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic("alpha", "wrong")
        )
        assert_error(response, 401, "invalid_client")
    for _ in range(QUOTA):
        assert (await token_for(client, "alpha"))["access_token"]
