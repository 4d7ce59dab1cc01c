"""Directory events: built with the change, stored with it, published after it commits.

A handler records its events (``DirectoryChanged``, and ``ClientTokensRevoked`` when a
client's tokens must die) in the same transaction as the change (``Directory.record``),
then calls ``Outbox.deliver`` once the transaction committed (``shared.outbox``, the table
``users.outbox``).
If the broker is unreachable the rows stay and the sweep publishes them later, so the
audit trail sees every change exactly as often as consumers dedupe by ``event_id``
(at least once; a retry republishes the same id).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Mapping
from typing import Any

from services.user_service.repository import OUTBOX_TABLE, Directory, Store
from shared.auth.scopes import PLATFORM_TENANT
from shared.bus.publish import BulkPublisher
from shared.events import EVENT_NAMESPACE, ClientTokensRevoked, DirectoryChanged, Event, now_ns
from shared.outbox import Outbox as SharedOutbox

log = logging.getLogger(__name__)

#: Whose action a bootstrap change is (no token involved).
BOOTSTRAP_ACTOR = "bootstrap"


def directory_changed(
    *, tenant: str, entity: str, entity_id: str, action: str, actor: str, details: dict | None = None
) -> DirectoryChanged:
    """One ``DirectoryChanged`` event (new uuid4 id, timestamped now). ``details`` must hold no secret."""
    now = now_ns()
    return DirectoryChanged(
        event_id=uuid.uuid4(),
        ts_event=now,
        ts_init=now,
        tenant=tenant,
        entity=entity,
        entity_id=entity_id,
        action=action,
        actor=actor[:128],
        details=details or {},
    )


def client_tokens_revoked(
    *, tenant: str, client_id: str, reason: str, token_lifetime_s: float, issued_before: int | None = None
) -> ClientTokensRevoked:
    """Revoke every token of ``client_id`` issued up to now.

    The cut-off is the next whole second: ``iat`` has whole seconds, so a token minted
    earlier in this second is refused too (a client re-keyed this very second may see its
    new token refused and ask again; the other way round, a stolen token would survive).
    The id is derived from the client and the cut-off: a republished revocation is the same event.
    ``issued_before``: an earlier cut-off, to announce again.
    """
    if issued_before is None:
        issued_before = math.floor(time.time()) + 1
    ts = now_ns()
    return ClientTokensRevoked(
        event_id=uuid.uuid5(EVENT_NAMESPACE, f"client_tokens_revoked|{client_id}|{issued_before}"),
        ts_event=ts,
        ts_init=ts,
        client_id=client_id,
        tenant=tenant,
        issued_before=issued_before,
        expires_at=issued_before + math.ceil(token_lifetime_s),
        reason=reason[:64],
    )


class Changes:
    """The events of one transaction's changes made by ``actor``, to record with them (``Directory.record``)."""

    def __init__(self, actor: str, token_lifetime_s: float) -> None:
        self.actor = actor
        self.token_lifetime_s = token_lifetime_s
        self.events: list[Event] = []

    def emit(self, tenant: str, entity: str, entity_id: str, action: str, **details: Any) -> None:
        """One ``DirectoryChanged`` (``details`` hold no secret)."""
        self.events.append(
            directory_changed(
                tenant=tenant, entity=entity, entity_id=entity_id, action=action, actor=self.actor, details=details
            )
        )

    async def revoke_tokens(
        self, directory: Directory, client_id: str, reason: str, tenant: str = PLATFORM_TENANT
    ) -> None:
        """Every token of ``client_id`` issued up to now dies (``ClientTokensRevoked``), its cut-off remembered."""
        revocation = client_tokens_revoked(
            tenant=tenant, client_id=client_id, reason=reason, token_lifetime_s=self.token_lifetime_s
        )
        await directory.mark_tokens_revoked(client_id, revocation.issued_before)
        self.events.append(revocation)


class Outbox(SharedOutbox):
    """The directory's outbox (``users.outbox``): revocations are published first."""

    def __init__(self, store: Store, publishers: Mapping[str, BulkPublisher[Any]], *, grace_s: float) -> None:
        """``publishers``: one per topic of the events recorded (``Event.TOPIC``)."""
        super().__init__(store.pool, OUTBOX_TABLE, publishers, grace_s=grace_s, first=(ClientTokensRevoked.TOPIC,))
        self._store = store

    async def announce_recent_revocations(self, token_lifetime_s: float) -> int:
        """Publish again the client cut-offs still in force (at start): the broker may have restarted
        empty before any gateway recorded one. Same event ids, so nothing is counted twice."""
        async with self._store.reading() as directory:
            cutoffs = await directory.recent_token_cutoffs(token_lifetime_s)
        events = [
            client_tokens_revoked(
                tenant=tenant,
                client_id=client_id,
                reason="revoked",
                token_lifetime_s=token_lifetime_s,
                issued_before=issued_before,
            )
            for tenant, client_id, issued_before in cutoffs
        ]
        await self.deliver(events)
        return len(events)
