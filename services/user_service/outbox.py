"""Directory events: built with the change, stored with it, published after it commits.

A handler records its ``DirectoryChanged`` events in the same transaction as the change
(``Directory.record``), then calls ``Outbox.deliver`` once the transaction committed.
If the broker is unreachable the rows stay and the sweep publishes them later, so the
audit trail sees every change exactly as often as consumers dedupe by ``event_id``
(at least once; a retry republishes the same id).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence

from services.user_service.repository import Store
from shared.bus.publish import BulkPublisher
from shared.events import DirectoryChanged, now_ns

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


class Outbox:
    """Publishes recorded events and removes them from the outbox once the broker acknowledged them."""

    def __init__(self, store: Store, publisher: BulkPublisher[DirectoryChanged], *, grace_s: float) -> None:
        self._store = store
        self.publisher = publisher
        self._grace_s = grace_s

    async def deliver(self, events: Sequence[DirectoryChanged]) -> None:
        """Publish events whose change just committed. Never raises: a failure is left to the sweep."""
        if not events:
            return
        try:
            await self.publisher.publish(events)
            async with self._store.reading() as directory:
                await directory.forget([e.event_id for e in events])
        except Exception:
            log.exception("publishing %d directory event(s) failed; the outbox sweep will retry", len(events))

    async def sweep(self) -> int:
        """Publish events older than the grace period that are still in the outbox; returns how many."""
        async with self._store.transaction() as directory:
            records = await directory.claim_outbox(self._grace_s)
            if records:
                await self.publisher.publish_encoded([(r.key, r.payload) for r in records])
                await directory.forget([r.event_id for r in records])
            return len(records)

    async def run(self, interval_s: float) -> None:
        """Sweep forever, every ``interval_s`` (cancel to stop)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                if swept := await self.sweep():
                    log.info("published %d directory event(s) from the outbox", swept)
            except Exception:  # the broker or the database is away: try again next round
                log.warning("outbox sweep failed; retrying in %.1f s", interval_s, exc_info=True)
