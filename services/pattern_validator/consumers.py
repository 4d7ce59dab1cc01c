"""pattern-validator's consumers.

* Signals: one group (``pattern-validator.signals``), committed after each batch's verdicts are
  stored and published; a failure (PostgreSQL, the broker) rewinds the batch (redelivered
  signals get their stored verdict). Undecodable signals are dead-lettered.
* Bars and feature vectors: one consumer of both topics, no group: every instance keeps every
  series' recent window (the signals of any symbol can come to it after a rebalance). They start
  from the earliest record by default: after a restart the windows are rebuilt from the topics.
* Pace: both consumers are on a signal's path (a signal waits for its own bar and vector), so one
  ``PollPacer`` keeps them at the platform's ``KAFKA_FETCH_MAX_WAIT_MS`` while records flow and at
  ``IDLE_FETCH_MAX_WAIT_MS`` after ``IDLE_AFTER_S`` without any (a bar announces its signal); only
  the signals' feed takes the burst pace (the bar and vector are there well before their signal).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy

from services.pattern_validator.inputs import Inputs
from services.pattern_validator.settings import PatternValidatorSettings
from services.pattern_validator.validator import Validator
from shared.bus.consume import RAW_BATCH, decode_records, split_by_topic
from shared.bus.pacing import ACTIVE_BATCH_TIMEOUT_MS, PollPacer, signal_path_pacer
from shared.events import FeatureVector, MarketBar, Signal
from shared.kit.bus import ServiceBus

log = logging.getLogger(__name__)

SIGNALS_GROUP = "pattern-validator.signals"
BARS = "pattern-validator.bars"
VECTORS = "pattern-validator.vectors"
RETRY_PAUSE_S = 1.0


def subscribe(
    bus: ServiceBus, validator: Validator, inputs: Inputs, settings: PatternValidatorSettings, fetch_max_wait_ms: int
) -> tuple[Sequence[Any], PollPacer]:
    """Feed the validator; returns the group-less subscribers (for the readiness check) and the
    pacer of the three feeds (it must run while the bus does)."""
    feeds_start_from = settings.feeds_start_from
    fast: dict[str, Any] = {
        "batch": True,
        "batch_timeout_ms": ACTIVE_BATCH_TIMEOUT_MS,
        "fetch_max_wait_ms": fetch_max_wait_ms,
        **RAW_BATCH,
    }
    signal_dlq, bar_dlq, vector_dlq = (bus.dead_letters(g) for g in (SIGNALS_GROUP, BARS, VECTORS))

    signals_sub = bus.subscriber(
        Signal,
        group=SIGNALS_GROUP,
        max_records=200,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        **fast,
    )

    @signals_sub
    async def signals(msg: KafkaMessage) -> None:
        pacer.saw_records()
        try:
            for _, signal in await decode_records(Signal, msg.raw_message, signal_dlq):
                await validator.handle(signal)
        except Exception:
            log.exception("validating a batch of signals failed; it will be redelivered")
            await asyncio.sleep(RETRY_PAUSE_S)
            raise

    # Bars and vectors: one consumer of both topics (they wake together; a consumer each would poll
    # the broker twice as often).
    inputs_sub = bus.subscriber_of_many(
        (MarketBar, FeatureVector), group=None, max_records=5000, auto_offset_reset=feeds_start_from, **fast
    )

    @inputs_sub
    async def bars_and_vectors(msg: KafkaMessage) -> None:
        pacer.saw_records()
        by_topic = split_by_topic(msg.raw_message)
        for _, bar in await decode_records(MarketBar, by_topic.get(MarketBar.TOPIC, ()), bar_dlq):
            inputs.add_bar(bar)
        for _, vector in await decode_records(FeatureVector, by_topic.get(FeatureVector.TOPIC, ()), vector_dlq):
            inputs.add_vector(vector)

    # The bar and the vector come tens of milliseconds before their signal: their feed need not
    # burst (a bursting feed costs the broker and this service ~500 fetches a second).
    pacer = signal_path_pacer(
        signals_sub,
        settings=settings,
        fetch_max_wait_ms=fetch_max_wait_ms,
        steady=(inputs_sub,),
    )
    return (inputs_sub,), pacer
