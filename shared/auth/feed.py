"""Keep a verifier's :class:`RevokedTokens` in step with the gateway's revocations.

Two sources, because neither is enough alone: the topics ``auth.revocations.v1`` and
``auth.client-revocations.v1`` bring each revocation within milliseconds, and the gateway's
revocation list (``GET /oauth2/revocations``, read from its PostgreSQL) is the durable
record, read at start and every ``resync_s``: the embedded broker keeps its topics in memory,
so after it restarts empty a service that starts again would otherwise forget every
revocation made before.

A module of its own so that ``import shared.auth`` does not pull in FastStream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.auth.revoked import RevokedTokens
from shared.bus.consume import RAW_BATCH
from shared.events import ClientTokensRevoked, TokenRevoked
from shared.kit.bus import ServiceBus

log = logging.getLogger(__name__)

_E = TypeVar("_E", TokenRevoked, ClientTokensRevoked)

#: Path of the gateway's revocation list.
REVOCATION_LIST_PATH = "/oauth2/revocations"

#: How long a revocation subscriber's fetch may wait for records. The embedded broker answers a
#: fetch only when this has passed, data or not, so at the platform's 10 ms the two revocation
#: feeds of every service polled it ~800 times a second on an idle mesh (its idle CPU doubled,
#: and the bench's token and latency figures fell with it); a revocation reaching a service up
#: to ~0.3 s later costs little (a token the gateway revokes itself it refuses at once).
REVOCATION_POLL_MS = 200

#: What the gateway does with a client revocation besides remembering it (records it durably).
ClientRevocationHook = Callable[[ClientTokensRevoked], Awaitable[None]]


def register_revocation_feed(
    bus: ServiceBus, revoked: RevokedTokens, *, on_client_revoked: ClientRevocationHook | None = None
) -> None:
    """Subscribe ``bus`` to every revocation (``Consumes(TokenRevoked/ClientTokensRevoked, group=None)``);
    call before it starts.

    No consumer group: every instance of every service must see every revocation,
    and reading from the earliest offset on start rebuilds the set from what the
    topic retains (expired entries are dropped by :class:`RevokedTokens`).
    """
    options = {
        "group": None,
        "batch": True,
        "max_records": 500,
        "auto_offset_reset": "earliest",
        "batch_timeout_ms": REVOCATION_POLL_MS // 2,
        "fetch_max_wait_ms": REVOCATION_POLL_MS,
        **RAW_BATCH,
    }

    @bus.subscriber(TokenRevoked, **options)  # type: ignore[arg-type]
    async def follow_revocations(msg: KafkaMessage) -> None:
        for event in _decoded(TokenRevoked, msg):
            revoked.add(event.token_id, event.expires_at)

    @bus.subscriber(ClientTokensRevoked, **options)  # type: ignore[arg-type]
    async def follow_client_revocations(msg: KafkaMessage) -> None:
        for event in _decoded(ClientTokensRevoked, msg):
            revoked.revoke_client(event.client_id, event.issued_before, event.expires_at)
            if on_client_revoked is not None:
                await on_client_revoked(event)


def _decoded(kind: type[_E], msg: KafkaMessage) -> list[_E]:
    out = []
    for record in msg.raw_message:
        try:
            out.append(kind.model_validate_json(record.value or b""))
        except ValueError:
            # Nothing to revoke in it; the publishers' own tests guard the format.
            log.warning("ignoring an undecodable message at %s offset %s", record.topic, record.offset)
    return out


# --- the durable record, read over HTTP ----------------------------------------------------


class RevokedToken(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    jti: str = Field(min_length=1, max_length=64)
    expires_at: int


class RevokedClient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    client_id: str = Field(min_length=1, max_length=128)
    issued_before: int
    expires_at: int


class RevocationList(BaseModel):
    """The body of ``GET /oauth2/revocations``: every revocation whose tokens have not expired yet."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    tokens: list[RevokedToken]
    clients: list[RevokedClient]

    def apply_to(self, revoked: RevokedTokens) -> None:
        for token in self.tokens:
            revoked.add(token.jti, token.expires_at)
        for client in self.clients:
            revoked.revoke_client(client.client_id, client.issued_before, client.expires_at)


class RevocationListLoader:
    """Fills ``revoked`` from the gateway's revocation list at start, then again every ``resync_s``.

    Until the first load succeeds the set is incomplete and the verifier refuses every token
    (``RevokedTokens.complete``); failures are retried every ``retry_s``. Run :meth:`run` as a
    supervised background task.
    """

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        revoked: RevokedTokens,
        *,
        retry_s: float = 1.0,
        resync_s: float = 60.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self._http = http
        self._revoked = revoked
        self._retry_s = retry_s
        self._resync_s = resync_s
        self._timeout_s = timeout_s

    async def load(self) -> bool:
        """One attempt; whether the list was read and applied."""
        try:
            response = await self._http.get(self.url, timeout=self._timeout_s)
            response.raise_for_status()
            revocations = RevocationList.model_validate_json(response.content)
        except (httpx.HTTPError, ValidationError) as exc:
            log.warning("cannot read the revocation list at %s: %s", self.url, exc or type(exc).__name__)
            return False
        revocations.apply_to(self._revoked)
        if not self._revoked.complete:
            log.info("revocation list loaded: %d tokens, %d clients", len(revocations.tokens), len(revocations.clients))
        self._revoked.complete = True
        return True

    async def run(self) -> None:
        while True:
            loaded = await self.load()
            await asyncio.sleep(self._resync_s if loaded else self._retry_s)
