"""ml-deep-learning's subscribers: feature vectors -> windows -> predictions, lifecycle -> champions
reloaded, drift -> models flagged. Undecodable records go to the dead-letter topic; nothing else stops."""

from __future__ import annotations

import logging

from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy

from services.ml_deep_learning.inference import SequenceChampions
from services.ml_deep_learning.windows import Windows
from shared.bus.consume import RAW_BATCH, RecentIds, decode_records
from shared.events import FeatureDrift, FeatureVector, ModelLifecycle, Prediction, PredictionRefused
from shared.kit.bus import ServiceBus
from shared.ml.lifecycle import Lifecycle

log = logging.getLogger(__name__)

VECTORS_GROUP = "ml-deep-learning"
DRIFT_GROUP = "ml-deep-learning.drift"


def subscribe(
    bus: ServiceBus, champions: SequenceChampions, windows: Windows, lifecycle: Lifecycle, fetch_max_wait_ms: int
) -> None:
    predictions = bus.publisher(Prediction)
    refusals = bus.publisher(PredictionRefused)
    vectors_dlq = bus.dead_letters(VECTORS_GROUP)
    drift_dlq = bus.dead_letters(DRIFT_GROUP)
    seen = RecentIds(50_000)

    @bus.subscriber(
        FeatureVector,
        group=VECTORS_GROUP,
        batch=True,
        max_records=500,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch_timeout_ms=5,
        fetch_max_wait_ms=fetch_max_wait_ms,
        **RAW_BATCH,
    )
    async def predict_vectors(msg: KafkaMessage) -> None:
        decoded = await decode_records(FeatureVector, msg.raw_message, vectors_dlq)
        fresh = seen.fresh([vector for _, vector in decoded])
        for vector in fresh:
            windows.add(vector)
        out: list[Prediction] = []
        refused: list[PredictionRefused] = []
        try:
            # Durable before the offsets commit: a restart resumes with full windows.
            await windows.persist(fresh)
            for vector in fresh:
                p, r = champions.on_vector(vector, windows)
                out.extend(p)
                refused.extend(r)
            # Ids are deterministic (model, vector) and a redelivered vector gets the same window.
            await predictions.publish(out)
            await refusals.publish(refused)
        except Exception:
            seen.forget(fresh)
            raise  # NACK: the batch is redelivered

    # Every instance reloads its champions on every change (no group, only changes from now on:
    # the registry, read at start, holds what came before).
    @bus.subscriber(ModelLifecycle, group=None, batch=True, auto_offset_reset="latest", **RAW_BATCH)
    async def follow_lifecycle(msg: KafkaMessage) -> None:
        relevant = False
        for record in msg.raw_message:
            try:
                event = ModelLifecycle.model_validate_json(record.value or b"")
            except ValueError:
                log.warning("ignoring an undecodable lifecycle event at offset %s", record.offset)
                continue
            relevant = relevant or event.model_kind in champions.kinds
        if relevant:
            await champions.reload()

    @bus.subscriber(
        FeatureDrift,
        group=DRIFT_GROUP,
        batch=True,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        **RAW_BATCH,
    )
    async def flag_drift(msg: KafkaMessage) -> None:
        for _, drift in await decode_records(FeatureDrift, msg.raw_message, drift_dlq):
            await lifecycle.on_drift(drift)  # idempotent; models of other kinds are left to their service


__all__ = ["DRIFT_GROUP", "VECTORS_GROUP", "subscribe"]
