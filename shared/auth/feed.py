"""Keep a verifier's :class:`RevokedTokens` in step with ``auth.revocations.v1``.

A module of its own so that ``import shared.auth`` does not pull in FastStream.
"""

from __future__ import annotations

import logging

from faststream.kafka.annotations import KafkaMessage

from shared.auth.revoked import RevokedTokens
from shared.bus.consume import RAW_BATCH
from shared.events import TokenRevoked
from shared.kit.bus import ServiceBus

log = logging.getLogger(__name__)


def register_revocation_feed(bus: ServiceBus, revoked: RevokedTokens) -> None:
    """Subscribe ``bus`` to every revocation (``Consumes(TokenRevoked, group=None)``); call before it starts.

    No consumer group: every instance of every service must see every revocation,
    and reading from the earliest offset on start rebuilds the set from what the
    topic retains (expired entries are dropped by :meth:`RevokedTokens.add`).
    """

    @bus.subscriber(
        TokenRevoked,
        group=None,
        batch=True,
        max_records=500,
        auto_offset_reset="earliest",
        batch_timeout_ms=5,
        **RAW_BATCH,
    )
    async def follow_revocations(msg: KafkaMessage) -> None:
        for record in msg.raw_message:
            try:
                event = TokenRevoked.model_validate_json(record.value or b"")
            except ValueError:
                # Nothing to revoke in it; the publisher's own tests guard the format.
                log.warning("ignoring an undecodable message at %s offset %s", record.topic, record.offset)
                continue
            revoked.add(event.token_id, event.expires_at)
