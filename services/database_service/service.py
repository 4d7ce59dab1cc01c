"""database-service (8008): owner of the stores; market data in ClickHouse, served over HTTP."""

from __future__ import annotations

from services.database_service import consumers
from services.database_service.bars_fast_path import install_bars_fast_path
from services.database_service.cache import BarCache
from services.database_service.history import router as history_router
from services.database_service.repository import MarketRepository
from services.database_service.routes import router
from services.database_service.settings import DatabaseServiceSettings
from services.database_service.state import MarketData
from shared.events import MarketBar, MarketTick
from shared.kit.contract import Consumes, Contract
from shared.kit.deps import Bus, ClickHouse, TokenAuth
from shared.kit.service import Runtime, ServiceDefinition

CONTRACT = Contract(
    consumes=(
        Consumes(MarketTick, group=consumers.TICKS_GROUP, purpose="store ticks in ClickHouse"),
        Consumes(MarketBar, group=consumers.BARS_GROUP, purpose="store bars in ClickHouse"),
        Consumes(MarketBar, group=None, purpose="keep the newest bars in memory (every instance)"),
    ),
)


async def start(rt: Runtime[DatabaseServiceSettings, MarketData]) -> MarketData:
    settings = rt.settings
    repo = MarketRepository(rt.clickhouse)
    # Before readiness: chdb loads a table's parts and marks on its first read (a fresh
    # process answered the first symbols read in ~15-60 ms, the next in ~4-8 ms), and the
    # first request after `hats up` should not be the one that pays it.
    await repo.symbols()
    cache = BarCache(settings.cache_bars_per_series)
    feed = consumers.subscribe(rt.bus, rt.registry, repo, cache, settings)
    await feed.capture(rt.platform.kafka_servers, MarketBar.TOPIC)
    cache.caught_up = feed.done()
    return MarketData(settings, repo, cache)


SERVICE = ServiceDefinition(
    "database-service",
    settings=DatabaseServiceSettings,
    contract=CONTRACT,
    uses=(ClickHouse(), Bus(), TokenAuth()),
    routers=(router, history_router),
    start=start,
    configure=install_bars_fast_path,
)
