"""What data-collector's routes share while it runs, reached as ``CollectorDep`` (a FastAPI dependency)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from client.data_collector.backfill import Backfills
from client.data_collector.buffer import TickBuffer
from client.data_collector.confirmation import Confirmer
from client.data_collector.forwarder import Forwarder
from client.data_collector.sources import ConnectorSource
from client.server_client import ServerClient
from shared.kit.service import state_of


@dataclass(frozen=True)
class Collector:
    buffer: TickBuffer
    forwarder: Forwarder
    confirmer: Confirmer
    server: ServerClient
    connector: ConnectorSource
    backfills: Backfills
    #: The symbols a backfill takes when it names none (``DATA_COLLECTOR_SYMBOLS``).
    symbols: tuple[str, ...]


#: ``collector: CollectorDep`` in a route's parameters gives the running collector.
CollectorDep = Annotated[Collector, state_of(Collector)]
