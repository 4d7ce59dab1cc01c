"""shared.outbox on a real PostgreSQL: recorded with the caller's transaction (and only if it commits),
delivered then forgotten, left for the sweep when the broker fails, swept in order with the ``first``
topics ahead, a repeated event one row."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from shared.events import Fill, OrderAttribution, OrderUpdated, order_event_id
from shared.outbox import Outbox
from tests.support import own_database


class Recorder:
    """A publisher that remembers what it was given (or fails, while ``down``)."""

    def __init__(self, log: list[tuple[str, bytes]], topic: str) -> None:
        self.log, self.topic, self.down = log, topic, False

    async def publish(self, events):
        await self.publish_encoded([(e.partition_key(), e.model_dump_json().encode()) for e in events])

    async def publish_encoded(self, records):
        if self.down:
            raise ConnectionError("broker down")
        self.log.extend((self.topic, value) for _, value in records)
        return {}


def update(order_id: uuid.UUID, version: int, account: str = "acc-1") -> OrderUpdated:
    return OrderUpdated(
        event_id=order_event_id(order_id, version),
        ts_event=1,
        ts_init=1,
        order_id=order_id,
        version=version,
        client_order_id="c1",
        tenant="t",
        account_id=account,
        venue="paper",
        symbol="EURUSD",
        side="buy",
        type="market",
        quantity="0.1",
        time_in_force="gtc",
        state="new",
        filled_quantity="0",
    )


def fill(order_id: uuid.UUID) -> Fill:
    return Fill(
        event_id=uuid.uuid4(),
        ts_event=1,
        ts_init=1,
        order_id=order_id,
        client_order_id="c1",
        tenant="t",
        account_id="acc-fill",
        venue="paper",
        venue_fill_id="d1",
        symbol="EURUSD",
        side="buy",
        quantity="0.1",
        price="1.1",
        commission="0",
        currency="USD",
        attribution=OrderAttribution(),
    )


@pytest.fixture
async def pool(infra_env):
    _, env, _ = infra_env
    async with own_database(env["DATABASE_URL"], "ob") as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        await pool.execute(
            "CREATE SCHEMA app; CREATE TABLE app.outbox (event_id uuid PRIMARY KEY, topic text NOT NULL,"
            " key bytea NOT NULL, payload bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
        yield pool
        await pool.close()


def outbox_on(pool, log, *, first=()) -> Outbox:
    publishers = {e.TOPIC: Recorder(log, e.TOPIC) for e in (OrderUpdated, Fill)}
    return Outbox(pool, "app.outbox", publishers, grace_s=0, first=first)


async def rows(pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM app.outbox")


async def test_events_exist_only_if_the_transaction_commits(pool):
    outbox = outbox_on(pool, [])
    with pytest.raises(RuntimeError):
        async with pool.acquire() as conn, conn.transaction():
            await outbox.record(conn, [update(uuid.uuid4(), 1)])
            raise RuntimeError("the change failed")
    assert await rows(pool) == 0
    async with pool.acquire() as conn, conn.transaction():
        event = update(uuid.uuid4(), 1)
        await outbox.record(conn, [event, event])  # the same event twice: one row
    assert await rows(pool) == 1


async def test_delivered_events_are_forgotten_and_failed_ones_swept_in_order(pool):
    log: list[tuple[str, bytes]] = []
    outbox = outbox_on(pool, log, first=(Fill.TOPIC,))
    order = uuid.uuid4()
    events = [update(order, 1), update(order, 2)]
    async with pool.acquire() as conn, conn.transaction():
        await outbox.record(conn, events)
    await outbox.deliver(events)
    assert await rows(pool) == 0 and len(log) == 2

    for publisher in outbox.publishers.values():
        publisher.down = True
    later = [update(order, 3), update(order, 4), fill(order)]
    for event in later:  # three transactions, in this order
        async with pool.acquire() as conn, conn.transaction():
            await outbox.record(conn, [event])
    await outbox.deliver(later)  # logged, not raised
    assert await rows(pool) == 3
    for publisher in outbox.publishers.values():
        publisher.down = False
    log.clear()
    assert await outbox.sweep() == 3
    # The fill's topic first (``first``); the order's versions in the order they were recorded.
    assert [topic for topic, _ in log] == [Fill.TOPIC, OrderUpdated.TOPIC, OrderUpdated.TOPIC]
    assert [OrderUpdated.model_validate_json(value).version for _, value in log[1:]] == [3, 4]
    assert await rows(pool) == 0 and await outbox.sweep() == 0


def test_the_table_must_be_a_plain_schema_qualified_name():
    for bad in ("outbox", "app.outbox; DROP TABLE x", "App.Outbox"):
        with pytest.raises(ValueError):
            Outbox(None, bad, {}, grace_s=0)  # type: ignore[arg-type]


async def test_deliver_soon_publishes_in_the_order_handed_over_without_waiting(pool):
    import asyncio

    log: list[tuple[str, bytes]] = []
    outbox = outbox_on(pool, log)
    order = uuid.uuid4()
    events = [update(order, v) for v in range(1, 6)]
    for event in events:
        async with pool.acquire() as conn, conn.transaction():
            await outbox.record(conn, [event])
        outbox.deliver_soon([event])
    assert log == []  # nothing published until the delivery task runs
    task = asyncio.create_task(outbox.run_delivery())
    try:
        await asyncio.wait_for(outbox.drain(), 10)
    finally:
        task.cancel()
    assert [OrderUpdated.model_validate_json(value).version for _, value in log] == [1, 2, 3, 4, 5]
    assert await rows(pool) == 0
