"""What data-bridge's routes share while it runs, reached as ``Bridge`` (a FastAPI dependency)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from prometheus_client import CollectorRegistry, Counter

from services.data_bridge.bar_store import BarStore
from services.data_bridge.domain.validation import TickValidator
from services.data_bridge.progress import IngestProgress
from services.data_bridge.settings import DataBridgeSettings
from shared.bus.epoch import BrokerEpoch
from shared.bus.publish import BulkPublisher
from shared.events import MarketTick
from shared.kit.service import state_of


class IngestMetrics:
    """Counters of the ingest edge."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter("ticks_received_total", "Ticks received at the ingest edge", registry=registry)
        self.rejected = Counter(
            "ticks_rejected_total", "Ticks rejected at the ingest edge", ["reason"], registry=registry
        )
        self.published = Counter("ticks_published_total", "Ticks published to the bus", registry=registry)


@dataclass(frozen=True)
class DataBridge:
    settings: DataBridgeSettings
    validator: TickValidator
    ticks: BulkPublisher[MarketTick]
    metrics: IngestMetrics
    #: Labels receipts (its ``last`` value, read before the publish) and answers progress.
    epoch: BrokerEpoch
    progress: IngestProgress
    #: Where historical bars go (``POST /api/v1/ingest/bars``): database-service's import.
    history: BarStore


#: ``bridge: Bridge`` in a route's parameters gives the running service's state.
Bridge = Annotated[DataBridge, state_of(DataBridge)]
