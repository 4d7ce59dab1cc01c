"""The batch parser of high-volume consumers builds FastStream's own message, one header set per publish."""

from __future__ import annotations

from aiokafka import ConsumerRecord
from faststream.kafka.message import KafkaMessage
from faststream.kafka.parser import AioKafkaBatchParser

from shared.bus.consume import RAW_BATCH


def _record(offset: int, correlation_id: str, traceparent: str) -> ConsumerRecord:
    headers = (
        ("content-type", b"application/json"),
        ("correlation_id", correlation_id.encode()),
        ("traceparent", traceparent.encode()),
    )
    return ConsumerRecord(
        "market.ticks.v1",
        1,
        offset,
        1_700_000_000_000 + offset,
        0,
        b"EURUSD",
        b'{"n": %d}' % offset,
        None,
        6,
        8,
        headers,
    )


async def test_the_parser_matches_faststreams_with_one_header_set_per_publish():
    records = tuple(
        [_record(i, "publish-a", "00-aa-01-01") for i in range(3)]
        + [_record(i, "publish-b", "00-bb-02-01") for i in range(3, 5)]
        + [_record(5, "publish-a", "00-aa-03-01")]
    )  # same call id, other headers: first set kept
    parser = AioKafkaBatchParser(KafkaMessage, None)
    ours = await RAW_BATCH["parser"](records, parser.parse_batch)
    theirs = await parser.parse_batch(records)

    for attribute in (
        "body",
        "headers",
        "reply_to",
        "content_type",
        "message_id",
        "correlation_id",
        "raw_message",
        "path",
    ):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute
    assert type(ours) is type(theirs)
    assert [h["traceparent"] for h in ours.batch_headers] == ["00-aa-01-01", "00-bb-02-01"]
    assert ours.batch_headers == [theirs.batch_headers[0], theirs.batch_headers[3]]


async def test_an_unknown_parser_is_still_collapsed():
    records = tuple(_record(i, "publish-a" if i < 2 else "publish-b", "00-aa-01-01") for i in range(4))
    parser = AioKafkaBatchParser(KafkaMessage, None)

    async def wrapped(batch):  # no ``__self__``: the generic path
        return await parser.parse_batch(batch)

    message = await RAW_BATCH["parser"](records, wrapped)
    assert [h["correlation_id"] for h in message.batch_headers] == ["publish-a", "publish-b"]
    assert message.body == [r.value for r in records]
