"""Fixtures of the api-gateway tests (helpers in ``gateway_harness``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from gateway_harness import Gateway, RevocationWatcher, running_gateway

from services.api_gateway.settings import GatewaySettings

#: Generous brute-force limits and token quota: the functional tests fail on purpose now and then,
#: from one address, and ask for many tokens for the same few clients.
RELAXED = GatewaySettings(auth_failures_per_client=1000, auth_failures_per_ip=1000, token_requests_per_client=100_000)


@pytest.fixture(scope="module")
def gateway_settings() -> GatewaySettings:
    """Override in a module to run its gateway with other settings."""
    return RELAXED


@pytest.fixture(scope="module")
async def gateway(infra_env, gateway_settings) -> AsyncIterator[Gateway]:
    async with running_gateway(infra_env, gateway_settings) as gw:
        yield gw


@pytest.fixture
async def client(gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10.0) as http:
        yield http


@pytest.fixture
async def revocations(infra_env) -> AsyncIterator[RevocationWatcher]:
    _, _, infra = infra_env
    async with RevocationWatcher(infra.kafka_servers) as watcher:
        yield watcher
