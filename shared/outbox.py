"""The transactional outbox: events stored with the change that makes them, published after it commits.

A service writes its events into its outbox table (``Outbox.record``) on the connection of the
transaction that makes the change, so an event exists if and only if its change does. Once the
transaction committed it calls ``Outbox.deliver``: the events are published and their rows deleted.
If the process dies in between, or the broker is away, the rows stay and the sweep
(``Outbox.run``) publishes them later. Delivery is at least once: a row published whose deletion
was lost is published again with the same ``event_id``, which consumers deduplicate.

Each service has its own table (``users.outbox``, ``trading.outbox``), of this shape::

    CREATE TABLE <schema>.outbox (
        event_id   uuid        PRIMARY KEY,
        topic      text        NOT NULL,
        key        bytea       NOT NULL,
        payload    bytea       NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    );

Recording an event whose id is already in the table changes nothing (``ON CONFLICT DO NOTHING``):
deterministic ids make a repeated change's event the same row.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Protocol

import asyncpg

from shared.events import Event, encode_event

log = logging.getLogger(__name__)

_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")


class Publisher(Protocol):
    """What the outbox publishes with: ``shared.bus.publish.BulkPublisher`` (one per topic)."""

    async def publish(self, events: Sequence[Any]) -> dict[int, int]: ...

    async def publish_encoded(self, records: Sequence[tuple[bytes, bytes]]) -> dict[int, int]: ...


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One stored event, encoded as it will be published."""

    event_id: uuid.UUID
    topic: str
    key: bytes
    payload: bytes


def _checked_table(table: str) -> str:
    if not _TABLE_NAME.match(table):
        raise ValueError(f"outbox table must be schema.table in lower case, not {table!r}")
    return table


async def record_events(conn: asyncpg.Connection, table: str, events: Sequence[Event]) -> None:
    """Write ``events`` into the outbox ``table`` on ``conn``, inside the caller's transaction."""
    if events:
        await conn.executemany(
            f"INSERT INTO {_checked_table(table)} (event_id, topic, key, payload) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (event_id) DO NOTHING",
            [(e.event_id, e.TOPIC, e.partition_key(), encode_event(e)) for e in events],
        )


class Outbox:
    """Records events in ``table`` within the caller's transaction, publishes them after the commit,
    and sweeps what was not acknowledged.

    ``publishers``: one per topic of the events recorded (``Event.TOPIC``). ``grace_s``: a row
    younger than this is left to the request that wrote it (it is being delivered). ``first``:
    topics published before the others when one delivery carries several (user-service sends
    token revocations first: they must reach the verifiers soonest).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        table: str,
        publishers: Mapping[str, Publisher],
        *,
        grace_s: float,
        first: Sequence[str] = (),
    ) -> None:
        self.pool = pool
        self.table = _checked_table(table)
        self.publishers = dict(publishers)
        self.grace_s = grace_s
        self._rank: Callable[[str], int] = lambda topic: 0 if topic in first else 1
        self._queue: asyncio.Queue[list[Event]] = asyncio.Queue()

    async def record(self, conn: asyncpg.Connection, events: Sequence[Event]) -> None:
        """Write ``events`` on ``conn``, inside the caller's transaction (they commit with the change)."""
        await record_events(conn, self.table, events)

    async def deliver(self, events: Sequence[Event]) -> None:
        """Publish events whose change just committed, then forget them. Never raises: a failure
        is logged and left to the sweep."""
        if not events:
            return
        try:
            ordered = sorted(events, key=lambda e: self._rank(e.TOPIC))
            for topic, batch in groupby(ordered, key=lambda e: e.TOPIC):
                await self.publishers[topic].publish(list(batch))
            await self._forget(self.pool, [e.event_id for e in events])
        except Exception:
            log.exception("publishing %d event(s) of %s failed; the sweep will retry", len(events), self.table)

    def deliver_soon(self, events: Sequence[Event]) -> None:
        """Hand events whose change just committed to the delivery task (``run_delivery``) and return at
        once: a request need not wait for the broker's acknowledgement, since the rows are durable.
        The task publishes batches in the order they were handed over; if it is not running, the sweep
        publishes the rows after the grace period."""
        if events:
            self._queue.put_nowait(list(events))

    async def run_delivery(self, max_batch: int = 500) -> None:
        """Publish what ``deliver_soon`` hands over, coalescing what queued meanwhile (cancel to stop)."""
        while True:
            batch = await self._queue.get()
            handed = 1
            while not self._queue.empty() and len(batch) < max_batch:
                batch.extend(self._queue.get_nowait())
                handed += 1
            try:
                await self.deliver(batch)
            finally:
                for _ in range(handed):
                    self._queue.task_done()

    async def drain(self) -> None:
        """Wait until everything handed to ``deliver_soon`` has been tried (published or left to the sweep)."""
        await self._queue.join()

    async def sweep(self, limit: int = 500) -> int:
        """Publish the rows older than the grace period (locked, so concurrent sweepers split them);
        returns how many."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT event_id, topic, key, payload FROM {self.table} "
                "WHERE created_at < now() - make_interval(secs => $1) "
                "ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                float(self.grace_s),
                limit,
            )
            records = [OutboxRecord(r["event_id"], r["topic"], r["key"], r["payload"]) for r in rows]
            # Stable sort: rows keep their creation order within a topic (an order's versions in order).
            ordered = sorted(records, key=lambda r: (self._rank(r.topic), r.topic))
            for topic, batch in groupby(ordered, key=lambda r: r.topic):
                await self.publishers[topic].publish_encoded([(r.key, r.payload) for r in batch])
            if records:
                await self._forget(conn, [r.event_id for r in records])
            return len(records)

    async def pending(self) -> int:
        """How many events wait in the table (published or not)."""
        async with self.pool.acquire() as conn:
            return int(await conn.fetchval(f"SELECT count(*) FROM {self.table}"))

    async def run(self, interval_s: float) -> None:
        """Sweep forever, every ``interval_s`` (cancel to stop)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                if swept := await self.sweep():
                    log.info("published %d event(s) from %s", swept, self.table)
            except Exception:  # the broker or the database is away: try again next round
                log.warning("sweep of %s failed; retrying in %.1f s", self.table, interval_s, exc_info=True)

    async def _forget(self, conn: asyncpg.Connection | asyncpg.Pool, event_ids: list[uuid.UUID]) -> None:
        await conn.execute(f"DELETE FROM {self.table} WHERE event_id = ANY($1::uuid[])", event_ids)
