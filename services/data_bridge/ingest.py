"""The ingest edge: tick batches from the client tier in, validated ticks onto ``market.ticks.v1``."""

from __future__ import annotations

import logging
from typing import Annotated

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from services.data_bridge.ingest_body import IngestBatch, Malformed, decode_batch, decode_plain_batch
from services.data_bridge.state import Bridge
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import MARKET_WRITE
from shared.events import encode_tick, now_ns, tick_event_id_text
from shared.kit.problems import Problem

router = APIRouter(prefix="/api/v1/ingest", tags=["ingest"])
log = logging.getLogger(__name__)


class Rejected(BaseModel):
    index: int
    reason: str
    detail: str


class IngestResult(BaseModel):
    accepted: int
    rejected: list[Rejected]


@router.post(
    "/ticks",
    status_code=202,
    response_model=IngestResult,
    operation_id="ingest_ticks",
    summary="Validate a batch of ticks and publish the good ones",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": IngestBatch.model_json_schema()}}}
    },
)
async def ingest_ticks(request: Request, bridge: Bridge, _: Annotated[Principal, require(MARKET_WRITE)]) -> Response:
    """Each tick is judged on its own: bad ones come back with a reason, the rest are published.

    202 means every accepted tick is acknowledged by Kafka; 503 means none was
    (the caller keeps its buffer and retries; duplicates are harmless, ids are deterministic).
    """
    body = await request.body()
    limit = bridge.settings.max_ticks_per_request
    source, items = decode_plain_batch(body, limit) or decode_batch(body, limit)

    validator = bridge.validator
    received = now_ns()
    events: list[tuple[bytes, bytes]] = []  # (key, MarketTick JSON)
    rejected: list[dict] = []
    for index, tick in enumerate(items):
        if isinstance(tick, Malformed):
            rejected.append({"index": index, "reason": "malformed", "detail": tick.detail})
            continue
        rejection = validator.check(tick, received)
        if rejection is not None:
            rejected.append({"index": index, "reason": rejection.reason.value, "detail": rejection.detail})
            continue
        # The tick's fields have MarketTick's types, so the event is encoded without a second validation.
        symbol, bid, ask, last, volume, flags = tick.symbol, tick.bid, tick.ask, tick.last, tick.volume, tick.flags
        events.append(
            (
                symbol.encode(),
                encode_tick(
                    event_id=tick_event_id_text(symbol, tick.time_msc, bid, ask, last, volume, flags),
                    ts_event=tick.ts_event,
                    ts_init=received,
                    symbol=symbol,
                    bid=bid,
                    ask=ask,
                    last=last,
                    volume=volume,
                    flags=flags,
                    source=source,
                ),
            )
        )

    metrics = bridge.metrics
    metrics.received.inc(len(items))
    for item in rejected:
        metrics.rejected.labels(item["reason"]).inc()
    try:
        await bridge.ticks.publish_encoded(events)
    except Exception as exc:
        log.exception("publishing %d ticks failed", len(events))
        raise Problem(
            503,
            f"the event bus did not acknowledge the ticks ({type(exc).__name__}); retry",
            headers={"Retry-After": "1"},
        ) from exc
    metrics.published.inc(len(events))
    return Response(
        orjson.dumps({"accepted": len(events), "rejected": rejected}), status_code=202, media_type="application/json"
    )
