"""The ingest edge: tick batches from the client tier in, validated ticks onto ``market.ticks.v1``."""

from __future__ import annotations

import logging
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services.data_bridge.ingest_body import IngestBatch, Malformed, decode_batch, decode_plain_batch
from services.data_bridge.state import Bridge
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import MARKET_WRITE
from shared.bus.epoch import EPOCH_HEADER
from shared.events import encode_tick, now_ns, tick_event_id_text
from shared.kit.problems import Problem

router = APIRouter(prefix="/api/v1/ingest", tags=["ingest"])
log = logging.getLogger(__name__)


class Rejected(BaseModel):
    index: int
    reason: str
    detail: str


class Receipt(BaseModel):
    """Where the accepted ticks were written: confirmed once ``/progress`` is past every offset here."""

    epoch: str = Field(description="the broker epoch the offsets count in (see GET /api/v1/ingest/progress)")
    offsets: dict[str, int] = Field(
        description="per partition, the highest offset written for this request; {} when nothing was accepted"
    )


class IngestResult(BaseModel):
    accepted: int
    rejected: list[Rejected]
    receipt: Receipt


class IngestProgressReport(BaseModel):
    epoch: str = Field(description="the broker epoch of the offsets")
    done: dict[str, int] = Field(
        description="per partition of market.ticks.v1, the first offset not yet stored and in a bar checkpoint"
    )


@router.post(
    "/ticks",
    status_code=202,
    response_model=IngestResult,
    operation_id="ingest_ticks",
    summary="Validate a batch of ticks and publish the good ones",
    responses={
        409: {
            "description": "the broker epoch named in the Broker-Epoch header is gone: nothing was published; "
            "send the unconfirmed ticks of that epoch again first (the answer's Broker-Epoch header is the new one)",
            "content": {"application/problem+json": {}},
        }
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": IngestBatch.model_json_schema()}}}
    },
)
async def ingest_ticks(
    request: Request,
    bridge: Bridge,
    _: Annotated[Principal, require(MARKET_WRITE)],
    broker_epoch: Annotated[
        str | None,
        Header(
            alias=EPOCH_HEADER,
            description="the epoch of the caller's unconfirmed receipts, if it has any (see the 409)",
        ),
    ] = None,
) -> Response:
    """Each tick is judged on its own: bad ones come back with a reason, the rest are published.

    202 means every accepted tick is acknowledged by Kafka; 503 means none was
    (the caller keeps its buffer and retries; duplicates are harmless, ids are deterministic).
    The receipt says where they were written; the caller keeps the ticks until
    ``GET /api/v1/ingest/progress`` confirms it, and sends them again if the epoch changes.
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
        # Read before the publish: the ticks land in this epoch's log or a newer one, never an older
        # one, so a receipt can only name a log its ticks are not in if that log is gone (never confirmed).
        epoch = bridge.epoch.last or await bridge.epoch.current()
    except Exception as exc:
        raise _bus_unavailable(exc, len(events)) from exc
    if broker_epoch is not None and broker_epoch != epoch:
        raise Problem(
            409,
            f"the broker log of epoch {broker_epoch} is gone (now {epoch}); nothing was published: "
            "send the unconfirmed ticks of the old epoch again first",
            headers={EPOCH_HEADER: epoch},
        )
    try:
        offsets = await bridge.ticks.publish_encoded(events)
    except Exception as exc:
        raise _bus_unavailable(exc, len(events)) from exc
    metrics.published.inc(len(events))
    receipt = {"epoch": epoch, "offsets": {str(partition): offset for partition, offset in offsets.items()}}
    return Response(
        orjson.dumps({"accepted": len(events), "rejected": rejected, "receipt": receipt}),
        status_code=202,
        media_type="application/json",
    )


def _bus_unavailable(exc: Exception, count: int) -> Problem:
    log.error("publishing %d ticks failed", count, exc_info=exc)
    return Problem(
        503,
        f"the event bus did not acknowledge the ticks ({type(exc).__name__}); retry",
        headers={"Retry-After": "1"},
    )


@router.get(
    "/progress",
    response_model=IngestProgressReport,
    operation_id="ingest_progress",
    summary="How far the accepted ticks are handled (stored and in a bar checkpoint), per partition",
)
async def ingest_progress(bridge: Bridge, _: Annotated[Principal, require(MARKET_WRITE)]) -> Response:
    """A receipt is confirmed when its epoch is this epoch and each of its offsets is below ``done``
    of its partition; a receipt of another epoch never will be (its ticks must be sent again)."""
    try:
        report = await bridge.progress.report()
    except Exception as exc:
        log.warning("ingest progress unavailable: %s", exc)
        raise Problem(
            503, f"the event bus cannot say ({type(exc).__name__}); retry", headers={"Retry-After": "1"}
        ) from exc
    return Response(orjson.dumps(report), media_type="application/json")
