"""Helpers for batch consumers: typed decoding with dead letters, and idempotency memory."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar
from uuid import UUID

from aiokafka import ConsumerRecord

from shared.bus.deadletter import DeadLetters
from shared.events import Event, EventDecodeError, decode_event

E = TypeVar("E", bound=Event)


async def _parse_one_header_set_per_publish(records: tuple[ConsumerRecord, ...], original_parser: Any) -> Any:
    """FastStream's batch parser, keeping one header set per ``correlation_id``.

    FastStream's tracing turns the headers of a batch into span links keyed by
    correlation id (one per publishing call), but first extracts context and
    baggage from every record's headers: at tens of thousands of records per
    second that was a fifth of a consumer's CPU, for links it then collapses.
    """
    message = await original_parser(records)
    first_per_publish: dict[str | None, dict] = {}
    for headers in message.batch_headers:
        first_per_publish.setdefault(headers.get("correlation_id"), headers)
    message.batch_headers = list(first_per_publish.values())
    return message


async def _leave_undecoded(message: Any, original_decoder: Any) -> Any:
    # The handler decodes the records itself (``decode_records``, with dead letters);
    # FastStream's own per-record JSON decoding would be thrown away.
    return message.raw_message


#: Subscriber options for high-volume batch consumers whose handler takes ``msg.raw_message``
#: and decodes it with :func:`decode_records`.
RAW_BATCH = {"parser": _parse_one_header_set_per_publish, "decoder": _leave_undecoded}


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

    Ids are kept as 128-bit ints, not ``UUID`` objects: ints are invisible to the
    garbage collector, and a few hundred thousand tracked objects made every full
    collection stall the event loop for tens of milliseconds.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        self._ids: OrderedDict[int, None] = OrderedDict()
        self._capacity = capacity

    def __contains__(self, event_id: UUID) -> bool:
        return event_id.int in self._ids

    def fresh(self, events: Iterable[E]) -> list[E]:
        """The events not seen before (also deduplicating within ``events``), remembered from now on."""
        out = []
        ids = self._ids
        for event in events:
            key = event.event_id.int
            if key in ids:
                continue
            ids[key] = None
            out.append(event)
        while len(ids) > self._capacity:
            ids.popitem(last=False)
        return out

    def forget(self, events: Iterable[Event]) -> None:
        """Undo ``fresh`` for events whose effect failed, so their redelivery is processed."""
        for event in events:
            self._ids.pop(event.event_id.int, None)
