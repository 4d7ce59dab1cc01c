"""The ingest edge: tick batches from the client tier in, validated ticks onto ``market.ticks.v1``."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.data_bridge.domain.validation import TickValidator
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import MARKET_WRITE
from shared.bus.publish import BulkPublisher
from shared.events import Price, Quantity, Symbol, encode_tick, now_ns, tick_event_id_text
from shared.kit.problems import Problem

router = APIRouter(prefix="/api/v1/ingest", tags=["ingest"])
log = logging.getLogger(__name__)


class IngestTick(BaseModel):
    """One tick as the client tier sends it: the fields of MT5's ``MqlTick``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: Symbol
    time_msc: Annotated[int, Field(ge=0, description="tick time, ms since the Unix epoch (UTC)")]
    bid: Price
    ask: Price
    last: Quantity | None = None
    volume: Quantity = Decimal(0)
    flags: Annotated[int, Field(ge=0)] = 0

    @property
    def ts_event(self) -> int:
        """Tick time in ns, as ``MarketTick.ts_event`` (what the validator checks)."""
        return self.time_msc * 1_000_000


class IngestBatch(BaseModel):
    """Request body of ``POST /api/v1/ingest/ticks``."""

    model_config = ConfigDict(extra="forbid")

    source: Annotated[str, Field(min_length=1, max_length=64)] = "client"
    ticks: list[dict[str, Any]]


class Rejected(BaseModel):
    index: int
    reason: str
    detail: str


class IngestResult(BaseModel):
    accepted: int
    rejected: list[Rejected]


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first['msg']}" if where else first["msg"]


@router.post("/ticks", status_code=202, response_model=IngestResult, operation_id="ingest_ticks",
             summary="Validate a batch of ticks and publish the good ones",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": IngestBatch.model_json_schema()}}}})
async def ingest_ticks(request: Request, _: Annotated[Principal, require(MARKET_WRITE)]) -> Response:
    """Each tick is judged on its own: bad ones come back with a reason, the rest are published.

    202 means every accepted tick is acknowledged by Kafka; 503 means none was
    (the caller keeps its buffer and retries; duplicates are harmless, ids are deterministic).
    """
    state = request.app.state
    try:
        batch = IngestBatch.model_validate_json(await request.body())
    except ValidationError as exc:
        raise Problem(422, _first_error(exc)) from exc
    if len(batch.ticks) > state.settings.max_ticks_per_request:
        raise Problem(413, f"at most {state.settings.max_ticks_per_request} ticks per request")

    validator: TickValidator = state.validator
    received = now_ns()
    source = batch.source
    events: list[tuple[bytes, bytes]] = []  # (key, MarketTick JSON)
    rejected: list[dict] = []
    for index, raw in enumerate(batch.ticks):
        try:
            tick = IngestTick.model_validate(raw)
        except ValidationError as exc:
            rejected.append({"index": index, "reason": "malformed", "detail": _first_error(exc)})
            continue
        rejection = validator.check(tick, received)
        if rejection is not None:
            rejected.append({"index": index, "reason": rejection.reason.value, "detail": rejection.detail})
            continue
        # IngestTick's fields have MarketTick's types, so the event is encoded without a second validation.
        symbol, bid, ask, last, volume, flags = tick.symbol, tick.bid, tick.ask, tick.last, tick.volume, tick.flags
        events.append((symbol.encode(), encode_tick(
            event_id=tick_event_id_text(symbol, tick.time_msc, bid, ask, last, volume, flags),
            ts_event=tick.ts_event, ts_init=received, symbol=symbol, bid=bid, ask=ask, last=last,
            volume=volume, flags=flags, source=source)))

    metrics = state.metrics
    metrics.received.inc(len(batch.ticks))
    for item in rejected:
        metrics.rejected.labels(item["reason"]).inc()
    publisher: BulkPublisher = state.tick_publisher
    try:
        await publisher.publish_encoded(events)
    except Exception as exc:
        log.exception("publishing %d ticks failed", len(events))
        raise Problem(503, f"the event bus did not acknowledge the ticks ({type(exc).__name__}); retry",
                      headers={"Retry-After": "1"}) from exc
    metrics.published.inc(len(events))
    return Response(orjson.dumps({"accepted": len(events), "rejected": rejected}), status_code=202,
                    media_type="application/json")
