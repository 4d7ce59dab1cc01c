"""Readiness of group-less consumers: every partition assigned and its start position resolved.

A consumer without a group that starts at ``latest`` resolves "latest" in the background after
``start()``: a record published before that resolution is skipped. A service whose group-less
consumers must not miss what is published once it reports ready adds this as a readiness check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from shared import compat


async def unpositioned(subscribers: Sequence[Any], timeout_s: float = 0.5) -> str | None:
    """``None`` once each subscriber's consumer has every partition of its topics assigned and
    positioned; otherwise what is still missing (a readiness check's answer)."""
    for subscriber in subscribers:
        consumer = compat.running_consumer(subscriber)
        if consumer is None:
            return "a consumer is not running yet"
        assigned = consumer.assignment()
        if not assigned:
            return "a consumer has no partitions yet"
        # Every topic subscribed to (a consumer may read several), not only those assigned so far.
        for topic in set(consumer.subscription() or ()) | {tp.topic for tp in assigned}:
            partitions = consumer.partitions_for_topic(topic) or set()
            if len({tp.partition for tp in assigned if tp.topic == topic}) < len(partitions):
                return f"not every partition of {topic} is assigned yet"
        try:
            for tp in assigned:
                await asyncio.wait_for(consumer.position(tp), timeout_s)
        except TimeoutError:
            return "a consumer's start position is not resolved yet"
    return None
