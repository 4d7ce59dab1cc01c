"""feature-engineering (8011): streaming technical indicators and features.

Consumes ``market.bars.v1`` (group ``feature-engineering``), keeps one ``core-1`` feature state
per (symbol, timeframe) (``shared/features.py``), publishes one ``FeatureVector`` per closed bar
and checkpoints the state in PostgreSQL after publishing (``pipeline.py`` explains the order).
A series without state is warmed up from stored bars (database-service's bars API, through
``rt.http``, with the service's own ``market:read`` token: ``ServiceIdentity``; a failed warm-up is
logged and the series starts from its first live bar). ``POST /api/v1/features/compute`` runs the
same indicators over posted rows.
"""

from __future__ import annotations

from aiokafka import ConsumerRebalanceListener, TopicPartition
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy

from services.feature_engineering.checkpoints import FeatureCheckpoints
from services.feature_engineering.history import HttpBarHistory
from services.feature_engineering.pipeline import FeatureMetrics, FeaturePipeline
from services.feature_engineering.routes import router
from services.feature_engineering.settings import FeatureEngineeringSettings
from services.feature_engineering.state import FeatureEngineering
from shared.auth.scopes import MARKET_READ
from shared.bus.consume import RAW_BATCH, decode_records
from shared.bus.pacing import ACTIVE_BATCH_TIMEOUT_MS, signal_path_pacer
from shared.events import FeatureVector, MarketBar
from shared.features import FeatureSet
from shared.kit.contract import Consumes, Contract
from shared.kit.deps import Bus, HttpClient, Postgres, ServiceIdentity, TokenAuth
from shared.kit.service import Runtime, ServiceDefinition

GROUP = "feature-engineering"

CONTRACT = Contract(
    produces=(FeatureVector,),
    consumes=(Consumes(MarketBar, group=GROUP, purpose="one feature vector per closed bar (state in PostgreSQL)"),),
    calls=("database-service",),
)


class ForgetOnRebalance(ConsumerRebalanceListener):
    """At a rebalance the in-memory states are dropped: a series whose partition moved may have been
    advanced by another instance meanwhile, so it is read from PostgreSQL again."""

    def __init__(self, pipeline: FeaturePipeline) -> None:
        self._pipeline = pipeline

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._pipeline.forget()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._pipeline.forget()


async def start(rt: Runtime[FeatureEngineeringSettings, FeatureEngineering]) -> FeatureEngineering:
    settings = rt.settings
    history = HttpBarHistory(
        rt.http,
        rt.url_of("database-service"),
        settings.history_page_bars,
        settings.history_timeout_s,
        ready=rt.identity.ready,
    )
    pipeline = FeaturePipeline(
        FeatureSet.core(),
        FeatureCheckpoints(rt.postgres),
        history,
        rt.bus.publisher(FeatureVector).publish,
        FeatureMetrics(rt.registry),
        warmup_bars=settings.warmup_bars,
    )
    dead_letters = rt.bus.dead_letters(GROUP)

    bars_sub = rt.bus.subscriber(
        MarketBar,
        group=GROUP,
        batch=True,
        max_records=500,
        auto_offset_reset="earliest",
        listener=ForgetOnRebalance(pipeline),
        ack_policy=AckPolicy.NACK_ON_ERROR,  # a failure rewinds the batch: the applied bars are skipped then
        batch_timeout_ms=ACTIVE_BATCH_TIMEOUT_MS,
        fetch_max_wait_ms=rt.platform.kafka_fetch_max_wait_ms,
        **RAW_BATCH,
    )

    @bars_sub
    async def on_bars(msg: KafkaMessage) -> None:
        pacer.saw_records()
        decoded = await decode_records(MarketBar, msg.raw_message, dead_letters)
        await pipeline.on_bars([bar for _, bar in decoded])

    # The first hop of a bar's signal: paced like the rest of the path (fast around each minute).
    pacer = signal_path_pacer(bars_sub, settings=settings, fetch_max_wait_ms=rt.platform.kafka_fetch_max_wait_ms)
    rt.background("poll-pacer", pacer.run)

    return FeatureEngineering(settings, pipeline)


SERVICE = ServiceDefinition(
    "feature-engineering",
    settings=FeatureEngineeringSettings,
    contract=CONTRACT,
    uses=(Postgres(), Bus(), TokenAuth(), HttpClient(), ServiceIdentity(scopes=(MARKET_READ,))),
    routers=(router,),
    start=start,
)
