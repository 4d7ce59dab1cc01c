"""Helpers for batch consumers: typed decoding with dead letters, and idempotency memory."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import TypeVar
from uuid import UUID

from aiokafka import ConsumerRecord

from shared.bus.deadletter import DeadLetters
from shared.events import Event, EventDecodeError, decode_event

E = TypeVar("E", bound=Event)


async def decode_records(kind: type[E], records: Sequence[ConsumerRecord],
                         dead_letters: DeadLetters) -> list[tuple[ConsumerRecord, E]]:
    """Decode every record as ``kind``; the ones that do not decode are dead-lettered, the rest returned."""
    good: list[tuple[ConsumerRecord, E]] = []
    for record in records:
        try:
            good.append((record, decode_event(kind, record.value or b"")))
        except EventDecodeError as exc:
            await dead_letters.send(record, "malformed", str(exc))
    return good


class RecentIds:
    """Bounded memory of processed ``event_id``s: a redelivered event is recognised and skipped.

    Bounded on purpose: it catches the common redelivery (a rebalance or restart
    replaying the last uncommitted batch); stores keep their own idempotency
    (unique keys, ReplacingMergeTree) for anything older.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        self._ids: OrderedDict[UUID, None] = OrderedDict()
        self._capacity = capacity

    def __contains__(self, event_id: UUID) -> bool:
        return event_id in self._ids

    def fresh(self, events: Iterable[E]) -> list[E]:
        """The events not seen before (also deduplicating within ``events``), remembered from now on."""
        out = []
        for event in events:
            if event.event_id in self._ids:
                continue
            self._ids[event.event_id] = None
            out.append(event)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return out

    def forget(self, events: Iterable[Event]) -> None:
        """Undo ``fresh`` for events whose effect failed, so their redelivery is processed."""
        for event in events:
            self._ids.pop(event.event_id, None)
