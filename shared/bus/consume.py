"""Helpers for batch consumers: typed decoding with dead letters, and idempotency memory."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

from aiokafka import ConsumerRecord

from shared import compat
from shared.bus.deadletter import DeadLetters
from shared.events import Event, EventDecodeError, decode_event

E = TypeVar("E", bound=Event)


async def _parse_one_header_set_per_publish(records: tuple[ConsumerRecord, ...], original_parser: Any) -> Any:
    """FastStream's batch parser, decoding each distinct header set once.

    FastStream's tracing turns the headers of a batch into span links keyed by
    correlation id (one per publishing call), but its parser first decodes every
    record's headers into a dict, and the tracing extracts context from each: at
    tens of thousands of records per second that was a fifth of a consumer's CPU,
    for links it then collapses. The records of one publishing call carry the same
    headers, so they are decoded once per distinct set, and one set is kept per
    correlation id. Builds the same message as ``AioKafkaBatchParser.parse_batch``
    (FastStream is pinned; ``tests/shared/test_batch_parser.py`` holds the two equal).
    """
    parts = compat.batch_parser_parts(original_parser)
    if parts is None:
        message = await original_parser(records)
        message.batch_headers = _one_per_correlation_id(message.batch_headers)
        return message
    decoded: dict[tuple[tuple[str, bytes], ...], dict[str, str]] = {}
    for record in records:
        if record.headers not in decoded:
            decoded[record.headers] = {name: value.decode() for name, value in record.headers}
    first, last = records[0], records[-1]
    headers = decoded[first.headers]
    message_class, topic_pattern, consumer = parts
    return message_class(
        body=[record.value or b"" for record in records],
        headers=headers,
        batch_headers=_one_per_correlation_id(decoded.values()),
        reply_to=headers.get("reply_to", ""),
        content_type=headers.get("content-type"),
        message_id=f"{first.offset}-{last.offset}-{first.timestamp}",
        correlation_id=headers.get("correlation_id"),
        raw_message=records,
        path=compat.topic_path(topic_pattern, first.topic),
        consumer=consumer,
    )


def _one_per_correlation_id(header_sets: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    first_per_publish: dict[str | None, dict[str, str]] = {}
    for headers in header_sets:
        first_per_publish.setdefault(headers.get("correlation_id"), headers)
    return list(first_per_publish.values())


async def _leave_undecoded(message: Any, original_decoder: Any) -> Any:
    # The handler decodes the records itself (``decode_records``, with dead letters);
    # FastStream's own per-record JSON decoding would be thrown away.
    return message.raw_message


#: Subscriber options for high-volume batch consumers whose handler takes ``msg.raw_message``
#: and decodes it with :func:`decode_records`.
RAW_BATCH = {"parser": _parse_one_header_set_per_publish, "decoder": _leave_undecoded}


async def decode_records(
    kind: type[E],
    records: Sequence[ConsumerRecord],
    dead_letters: DeadLetters,
    decode: Callable[[bytes], Any] | None = None,
) -> list[tuple[ConsumerRecord, E]]:
    """Decode every record as ``kind``; the ones that do not decode are dead-lettered, the rest returned.

    ``decode`` replaces the model's own decoding for a hot event (``shared.tick_decoder.decode_tick``):
    it must give ``kind``'s values, or raise ``EventDecodeError``.
    """
    if decode is None:
        decode = partial(decode_event, kind)
    good: list[tuple[ConsumerRecord, E]] = []
    for record in records:
        try:
            good.append((record, decode(record.value or b"")))
        except EventDecodeError as exc:
            await dead_letters.send(record, "malformed", str(exc))
    return good


def split_by_topic(records: Sequence[ConsumerRecord]) -> dict[str, list[ConsumerRecord]]:
    """A batch of a subscriber of several topics, per topic, each in the order it came."""
    by_topic: dict[str, list[ConsumerRecord]] = {}
    for record in records:
        by_topic.setdefault(record.topic, []).append(record)
    return by_topic


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
