"""Revocations survive the broker: one made while Kafka is down is published once it is back
(finding 14), and a verifier that starts after the broker restarted empty still refuses every
revoked token, rebuilt from the gateway's PostgreSQL (finding 17).

This module's gateway runs on a Tansu broker of its own, which the tests stop and start again
(empty, as ``make run`` does), so the session's broker is never disturbed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from gateway_harness import Gateway, assert_error, basic, decode_segment, running_gateway, token_for

from infra import kafka
from services.api_gateway.settings import GatewaySettings
from shared import topics
from shared.auth import InvalidToken
from shared.auth.feed import REVOCATION_LIST_PATH, RevocationListLoader
from shared.auth.service import platform_verifier
from shared.bus.broker import ensure_topics
from shared.events import TokenRevoked
from shared.settings import PlatformSettings
from tests.support import bound_socket, eventually

pytestmark = pytest.mark.timeout(180)

SWEEP_S = 1.0


@dataclass
class PrivateBroker:
    """A Tansu of this module's own (memory storage: a restart comes back empty)."""

    port: int
    log: Path
    process: object = None

    @property
    def servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = kafka.start_broker(self.port, self.log)
        asyncio.run(ensure_topics(self.servers))

    def stop(self) -> None:
        process = self.process
        if process is not None:
            process.terminate()  # type: ignore[attr-defined]
            process.wait(10)  # type: ignore[attr-defined]
        self.process = None


@pytest.fixture(scope="module")
def broker(infra_env) -> Iterator[PrivateBroker]:
    var, _, _ = infra_env
    sock = bound_socket()
    port = sock.getsockname()[1]
    sock.close()
    private = PrivateBroker(port, Path(var) / "logs" / f"kafka-{port}.log")
    private.start()
    yield private
    private.stop()


@pytest.fixture(scope="module")
async def gateway(infra_env, broker) -> AsyncIterator[Gateway]:
    var, env, infra = infra_env
    own_settings = PlatformSettings(
        hats_var_dir=infra.hats_var_dir, hats_port_offset=infra.hats_port_offset, kafka_bootstrap_servers=broker.servers
    )
    own = (var, env, own_settings)
    settings = GatewaySettings(
        auth_failures_per_client=1000,
        auth_failures_per_ip=1000,
        token_requests_per_client=100_000,
        revocation_sweep_interval_s=SWEEP_S,
    )
    async with running_gateway(own, settings) as gw:
        yield gw


@pytest.fixture
async def client(gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30.0) as http:
        yield http


async def revocations_on(servers: str, token_ids: set[str], timeout_s: float = 30.0) -> dict[str, TokenRevoked]:
    """The ``TokenRevoked`` events of ``token_ids`` in the topic, from its first record."""
    consumer = AIOKafkaConsumer(
        topics.AUTH_REVOCATIONS, bootstrap_servers=servers, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    seen: dict[str, TokenRevoked] = {}
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not token_ids <= seen.keys() and loop.time() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    event = TokenRevoked.model_validate_json(record.value or b"")
                    seen[event.token_id] = event
    finally:
        await consumer.stop()
    assert token_ids <= seen.keys(), f"missing revocations: {token_ids - seen.keys()}"
    return seen


def jti_of(issued: dict) -> str:
    return str(decode_segment(issued["access_token"], 1)["jti"])


async def test_a_revocation_made_while_kafka_is_down_is_published_when_it_is_back(client, gateway, broker):
    first = await token_for(client, "bravo")
    second = (
        await client.post(
            "/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
            headers=basic("bravo"),
        )
    ).json()
    broker.stop()
    try:
        # The reuse is detected and the family revoked while nothing can be published.
        replay = await client.post(
            "/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
            headers=basic("bravo"),
        )
        assert_error(replay, 400, "invalid_grant")
        pending = await gateway.server.revocations.ledger.unpublished(older_than_s=0)
        assert {t.jti for t in pending["refresh_token_reuse"]} == {jti_of(first), jti_of(second)}
    finally:
        await asyncio.to_thread(broker.start)  # back, and empty
    events = await revocations_on(broker.servers, {jti_of(first), jti_of(second)})
    assert {e.reason for e in events.values()} == {"refresh_token_reuse"}
    assert events[jti_of(second)].expires_at == decode_segment(second["access_token"], 1)["exp"]

    async def all_acknowledged() -> bool:
        return not await gateway.server.revocations.ledger.unpublished(older_than_s=0)

    assert await eventually(all_acknowledged, timeout_s=10)


async def test_a_verifier_started_after_the_broker_lost_its_topics_still_refuses_revoked_tokens(
    client, gateway, broker
):
    revoked = await token_for(client, "alpha")
    response = await client.post("/oauth2/revoke", data={"token": revoked["access_token"]}, headers=basic("alpha"))
    assert response.status_code == 200, response.text
    await revocations_on(broker.servers, {jti_of(revoked)})
    valid = await token_for(client, "alpha")

    await asyncio.to_thread(broker.stop)
    await asyncio.to_thread(broker.start)  # as after `make run`: every topic empty

    # A service starting now: its verifier as the kit's TokenAuth builds it.
    async with httpx.AsyncClient(timeout=5.0) as http:
        verifier = platform_verifier(gateway.settings, f"{gateway.url}/.well-known/jwks.json", http)
        assert verifier.revoked is not None
        # Until the gateway's list is read, nothing is accepted: the topic may have lost revocations.
        with pytest.raises(InvalidToken, match="not loaded"):
            await verifier.verify(valid["access_token"])
        loader = RevocationListLoader(gateway.url + REVOCATION_LIST_PATH, http, verifier.revoked)
        assert await loader.load()
        with pytest.raises(InvalidToken, match="revoked"):
            await verifier.verify(revoked["access_token"])
        assert (await verifier.verify(valid["access_token"])).client_id == "alpha"


async def test_the_revocation_list_is_public_no_store_and_holds_only_live_revocations(client, gateway):
    issued = await token_for(client, "alpha")
    await client.post("/oauth2/revoke", data={"token": issued["access_token"]}, headers=basic("alpha"))
    response = await client.get(REVOCATION_LIST_PATH)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert {"jti": jti_of(issued), "expires_at": decode_segment(issued["access_token"], 1)["exp"]} in body["tokens"]
    assert body["clients"] == []  # none in this module (see test_gateway_client_revocations.py)
