"""data-bridge (8001): the server edge for the client tier; ticks in, bars built and published."""

from __future__ import annotations

from services.data_bridge import bar_stage
from services.data_bridge.admission import install_inflight_limit
from services.data_bridge.bar_ingest import router as bars_router
from services.data_bridge.bar_store import BarStore
from services.data_bridge.domain.validation import TickValidator
from services.data_bridge.ingest import router
from services.data_bridge.progress import IngestProgress, bars_stored
from services.data_bridge.settings import DataBridgeSettings
from services.data_bridge.state import DataBridge, IngestMetrics
from shared.bus.epoch import BrokerEpoch
from shared.events import MarketBar, MarketTick
from shared.kit.contract import Consumes, Contract
from shared.kit.deps import Bus, HttpClient, Postgres, TokenAuth
from shared.kit.service import Runtime, ServiceDefinition

CONTRACT = Contract(
    produces=(MarketTick, MarketBar),
    consumes=(
        Consumes(MarketTick, group=bar_stage.GROUP, purpose="build M1-H1 bars (state checkpointed in PostgreSQL)"),
    ),
    calls=("database-service",),  # stores historical bars (POST /api/v1/ingest/bars)
)


async def start(rt: Runtime[DataBridgeSettings, DataBridge]) -> DataBridge:
    settings = rt.settings
    epoch = BrokerEpoch(rt.platform.kafka_servers, client_id=SERVICE.name)
    rt.background("broker-epoch", epoch.watch)
    rt.on_stop(epoch.close)  # registered first, so it runs after the stage's last checkpoint
    checkpoints = bar_stage.CheckpointStore(rt.postgres)
    bars = rt.bus.publisher(MarketBar)
    stage = bar_stage.BarStage(
        settings,
        checkpoints,
        epoch,
        bars,
        rt.bus.dead_letters(bar_stage.GROUP),
        rt.registry,
        bars_stored(rt.bus.broker, bars),
    )
    pacer = bar_stage.subscribe(rt.bus, stage, rt.platform.kafka_fetch_max_wait_ms)
    rt.background("poll-pacer", pacer.run)
    rt.background("bar-checkpoints", stage.checkpoint_periodically)
    rt.background("bar-storage-confirmations", stage.confirm_stored_periodically)
    rt.on_stop(stage.close)  # checkpoint every partition before the bus stops
    validator = TickValidator(
        symbols=settings.symbols or None,
        max_future_ns=settings.max_future_s * 10**9,
        max_spread_ratio=settings.max_spread_ratio,
    )
    ticks = rt.bus.publisher(MarketTick)
    progress = IngestProgress(rt.bus.broker, epoch, checkpoints, ticks)
    history = BarStore(
        rt.http,
        rt.url_of("database-service"),
        symbols=settings.symbols or None,
        max_bars=settings.max_bars_per_request,
        max_future_s=settings.max_future_s,
        timeout_s=settings.store_timeout_s,
        registry=rt.registry,
    )
    return DataBridge(settings, validator, ticks, IngestMetrics(rt.registry), epoch, progress, history)


SERVICE = ServiceDefinition(
    "data-bridge",
    settings=DataBridgeSettings,
    contract=CONTRACT,
    uses=(Postgres(), Bus(), TokenAuth(), HttpClient()),
    routers=(router, bars_router),
    start=start,
    configure=install_inflight_limit,
)
