"""Finding 10 at the gateway: a client's token cut-off (``ClientTokensRevoked``, published by
user-service) is honoured by the gateway's verifier at once and recorded in its PostgreSQL, so
``GET /oauth2/revocations`` hands it to every verifier that starts later."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from gateway_harness import decode_segment, token_for

from shared.auth import InvalidToken
from shared.auth.feed import REVOCATION_LIST_PATH
from shared.events import ClientTokensRevoked, encode_event, now_ns
from tests.support import eventually

pytestmark = pytest.mark.timeout(120)


async def publish(servers: str, event: ClientTokensRevoked) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        await producer.send_and_wait(event.TOPIC, encode_event(event), key=event.partition_key())
    finally:
        await producer.stop()


async def test_a_client_cut_off_refuses_its_earlier_tokens_everywhere_and_is_kept(client, gateway, infra_env):
    _, _, session = infra_env
    before = await token_for(client, "alpha")
    bystander = await token_for(client, "charlie")
    issued_before = int(time.time()) + 1
    # Short-lived on purpose: the session's broker is shared with the other gateway modules.
    event = ClientTokensRevoked(
        event_id=uuid.uuid4(),
        ts_event=now_ns(),
        ts_init=now_ns(),
        client_id="alpha",
        tenant="acme",
        issued_before=issued_before,
        expires_at=issued_before + 30,
        reason="client_disabled",
    )
    await publish(session.kafka_servers, event)

    async def introspected_inactive() -> bool:
        r = await client.post(
            "/oauth2/introspect", data={"token": before["access_token"]}, auth=("root", "root-secret")
        )
        return r.json() == {"active": False}

    assert await eventually(introspected_inactive, timeout_s=20)
    with pytest.raises(InvalidToken, match="revoked"):
        await gateway.server.verifier.verify(before["access_token"])
    assert (await gateway.server.verifier.verify(bystander["access_token"])).client_id == "charlie"

    listed = (await client.get(REVOCATION_LIST_PATH)).json()["clients"]
    assert {"client_id": "alpha", "issued_before": issued_before, "expires_at": issued_before + 30} in listed

    # A token issued from the cut-off on (the client's new secret, say) is good.
    await asyncio.sleep(max(0.0, issued_before - time.time()))
    after = await token_for(client, "alpha")
    assert decode_segment(after["access_token"], 1)["iat"] >= issued_before
    assert (await gateway.server.verifier.verify(after["access_token"])).client_id == "alpha"
