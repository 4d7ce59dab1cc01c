"""data-collector's HTTP API: what is buffered, sent, confirmed and quarantined, and where the gaps are."""

from __future__ import annotations

from dataclasses import asdict

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from client.data_collector.buffer import TickStore
from client.data_collector.state import CollectorDep

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
