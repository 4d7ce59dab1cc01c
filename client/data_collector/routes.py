"""data-collector's HTTP API: what is buffered, sent, confirmed and quarantined, and where the gaps are."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Annotated

import orjson
from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from client.data_collector.buffer import TickStore
from client.data_collector.state import CollectorDep
from shared.events import Symbol, Timeframe
from shared.kit.problems import Problem

PREFIX = "/api/v1/collector"
QUARANTINE_PATH = f"{PREFIX}/quarantine"

router = APIRouter(prefix=PREFIX, tags=["collector"])


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/status", operation_id="collector_status", summary="Buffer by state, delivery and source state")
async def status(collector: CollectorDep) -> Response:
    buffer, forwarder, server = collector.buffer, collector.forwarder, collector.server
    counts = await buffer.call(TickStore.counts)
    return _json(
        {
            # Not yet confirmed by the server: pending (to send) + sent (awaiting confirmation).
            "buffered": counts.unconfirmed,
            "ticks": asdict(counts),
            "full": await buffer.call(TickStore.full),
            "delivered": counts.confirmed,
            "accepted_by_server": forwarder.accepted,
            "refused_for_now": forwarder.refused_transient,
            "quarantined": counts.quarantined,
            "server_reachable": forwarder.reachable,
            "server_unreachable_since": forwarder.unreachable_since,
            "last_error": forwarder.last_error,
            "auth_problem": server.auth_problem,
            "clock_skew_s": server.clock_skew_s,
            "broker_epoch": collector.confirmer.epoch,
            "lost_requests_resent": collector.confirmer.lost_receipts,
            "connector_reachable": collector.connector.reachable,
            "gaps": len(await buffer.call(TickStore.gaps)),
        }
    )


@router.get("/gaps", operation_id="collector_gaps", summary="Silences longer than the gap threshold")
async def gaps(collector: CollectorDep) -> Response:
    return _json(await collector.buffer.call(TickStore.gaps))


@router.get("/quarantine", operation_id="collector_quarantine", summary="Ticks the server refused for good")
async def quarantine(collector: CollectorDep, limit: int = 100) -> Response:
    return _json(await collector.buffer.call(TickStore.quarantined, limit))


@router.post(
    "/quarantine/release",
    operation_id="collector_quarantine_release",
    summary="Send the quarantined ticks again (after fixing the cause)",
)
async def release(collector: CollectorDep) -> Response:
    released = await collector.buffer.call(TickStore.release_quarantine)
    collector.forwarder.wake.set()
    return _json({"released": released})


@router.delete("/quarantine", operation_id="collector_quarantine_discard", summary="Forget the quarantined ticks")
async def discard(collector: CollectorDep) -> Response:
    return _json({"discarded": await collector.buffer.call(TickStore.discard_quarantine)})


class BackfillRequest(BaseModel):
    """Body of ``POST /api/v1/collector/backfill``."""

    model_config = ConfigDict(extra="forbid")

    symbols: Annotated[list[Symbol] | None, Field(min_length=1, description="omitted: the collector's symbols")] = None
    timeframes: Annotated[list[Timeframe], Field(min_length=1)]
    start: dt.datetime = Field(description="first bar open time (ISO 8601, UTC if no offset)")
    end: dt.datetime | None = Field(default=None, description="last bar open time, inclusive; omitted: now")


def _unix(value: dt.datetime) -> int:
    return int((value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp())


@router.post(
    "/backfill",
    status_code=202,
    operation_id="collector_backfill",
    summary="Fetch the terminal's bars of a past range and have the server store the ones it lacks",
)
async def backfill(body: BackfillRequest, collector: CollectorDep) -> Response:
    """202 at once with the job; ``GET /api/v1/collector/backfill/{id}`` follows it."""
    backfills = collector.backfills
    start = _unix(body.start)
    end = _unix(body.end) if body.end is not None else int(backfills.now())
    if end < start:
        raise Problem(422, "end: must not be before start")
    symbols = list(dict.fromkeys(body.symbols or collector.symbols))
    job = backfills.submit(symbols, list(dict.fromkeys(body.timeframes)), start, end)
    return Response(
        orjson.dumps(job.as_json()),
        status_code=202,
        media_type="application/json",
        headers={"Location": f"{PREFIX}/backfill/{job.id}"},
    )


@router.get("/backfill", operation_id="collector_backfills", summary="Backfill jobs, oldest first")
async def backfills(collector: CollectorDep) -> Response:
    return _json([job.as_json() for job in collector.backfills.jobs()])


@router.get("/backfill/{job_id}", operation_id="collector_backfill_job", summary="One backfill job's progress")
async def backfill_job(job_id: str, collector: CollectorDep) -> Response:
    job = collector.backfills.get(job_id)
    if job is None:
        raise Problem(404, f"no backfill job {job_id} (jobs are kept in memory until the collector restarts)")
    return _json(job.as_json())
