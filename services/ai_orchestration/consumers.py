"""ai-orchestration's consumers: every instance reads every event of its topics (no group).

Why no group: a signal needs, for one symbol, its feature vectors (the signal's timeframe and
the trend timeframe), the predictions and refusals for them, and its bars. Those are four topics;
they are keyed by symbol, but Kafka assigns each topic's partitions to a group's members
independently, so one instance of a group could get a symbol's vectors and another its
predictions. Without a group each instance sees all of them (scaling out then means splitting
symbols by configuration, not by group). What must survive a restart is checkpointed in
PostgreSQL (``checkpoint.py``); the consumers start at ``latest`` (``AI_ORCHESTRATION_START_FROM``):
a signal for a bar that closed while the service was down would be stale anyway. Model
lifecycle events are read from the earliest: flags must be complete.

Pace (the embedded broker answers a fetch only after its wait, docs/architecture.md "The
embedded broker polls"): the signal's path (vectors, predictions, refusals) polls at the
platform's ``KAFKA_FETCH_MAX_WAIT_MS`` while records flow and at ``IDLE_FETCH_MAX_WAIT_MS`` after
``IDLE_AFTER_S`` without any; the three topics are read by one consumer (a vector announces its
predictions), paced by one ``PollPacer``.
Bars (outcomes: weights and calibration a bar later) and lifecycle events are off the signal's
path and always poll at ``SLOW_FEED_FETCH_MAX_WAIT_MS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faststream.kafka.annotations import KafkaMessage

from services.ai_orchestration.orchestrator import Orchestrator
from services.ai_orchestration.settings import AiOrchestrationSettings
from shared.bus.consume import RAW_BATCH, RecentIds, decode_records, split_by_topic
from shared.bus.pacing import ACTIVE_BATCH_TIMEOUT_MS, IDLE_BATCH_TIMEOUT_MS, PollPacer, signal_path_pacer
from shared.events import FeatureVector, MarketBar, ModelLifecycle, Prediction, PredictionRefused
from shared.kit.bus import ServiceBus

#: The dead-letter group names (no consumer group; the service's name for where its dead letters come from).
VECTORS = "ai-orchestration.vectors"
PREDICTIONS = "ai-orchestration.predictions"
REFUSALS = "ai-orchestration.refusals"
BARS = "ai-orchestration.bars"
LIFECYCLE = "ai-orchestration.lifecycle"


def subscribe(
    bus: ServiceBus, orchestrator: Orchestrator, settings: AiOrchestrationSettings, fetch_max_wait_ms: int
) -> tuple[Sequence[Any], PollPacer]:
    """Feed ``orchestrator`` from the bus; returns the subscribers (for the readiness check) and the
    pacer of the signal's path (it must run while the bus does)."""
    live: dict[str, Any] = {
        "batch": True,
        "max_records": 500,
        "batch_timeout_ms": ACTIVE_BATCH_TIMEOUT_MS,
        "fetch_max_wait_ms": fetch_max_wait_ms,
        "auto_offset_reset": settings.start_from,
        **RAW_BATCH,
    }
    slow = {
        **live,
        "batch_timeout_ms": IDLE_BATCH_TIMEOUT_MS,
        "fetch_max_wait_ms": settings.slow_feed_fetch_max_wait_ms,
    }
    seen_predictions, seen_refusals = RecentIds(100_000), RecentIds(20_000)
    subs = []

    def dead(name: str) -> Any:
        return bus.dead_letters(name)

    vector_dlq, prediction_dlq, refusal_dlq, bar_dlq, lifecycle_dlq = map(
        dead, (VECTORS, PREDICTIONS, REFUSALS, BARS, LIFECYCLE)
    )

    # The signal's path is one consumer of three topics: a vector announces its predictions (and the
    # rare refusal) within milliseconds, and a consumer each would poll the broker three times as often.
    sub = bus.subscriber_of_many((FeatureVector, Prediction, PredictionRefused), group=None, **live)

    @sub
    async def signal_path(msg: KafkaMessage) -> None:
        pacer.saw_records()
        by_topic = split_by_topic(msg.raw_message)
        # Vectors first: a round starts with its vector (a prediction ahead of it would wait in memory).
        for _, vector in await decode_records(FeatureVector, by_topic.get(FeatureVector.TOPIC, ()), vector_dlq):
            await orchestrator.on_vector(vector)
        decoded = await decode_records(Prediction, by_topic.get(Prediction.TOPIC, ()), prediction_dlq)
        for prediction in seen_predictions.fresh(event for _, event in decoded):
            await orchestrator.on_prediction(prediction)
        decoded_refusals = await decode_records(
            PredictionRefused, by_topic.get(PredictionRefused.TOPIC, ()), refusal_dlq
        )
        for refusal in seen_refusals.fresh(event for _, event in decoded_refusals):
            await orchestrator.on_refusal(refusal)

    subs.append(sub)
    pacer = signal_path_pacer(sub, settings=settings, fetch_max_wait_ms=fetch_max_wait_ms)
    sub = bus.subscriber(MarketBar, group=None, **slow)

    @sub
    async def bars(msg: KafkaMessage) -> None:
        for _, bar in await decode_records(MarketBar, msg.raw_message, bar_dlq):
            orchestrator.on_bar(bar)  # idempotent: a bar not newer than the series' newest changes nothing

    subs.append(sub)
    sub = bus.subscriber(ModelLifecycle, group=None, **{**slow, "auto_offset_reset": "earliest"})

    @sub
    async def lifecycle(msg: KafkaMessage) -> None:
        for _, event in await decode_records(ModelLifecycle, msg.raw_message, lifecycle_dlq):
            orchestrator.on_lifecycle(event)

    subs.append(sub)
    return subs, pacer
