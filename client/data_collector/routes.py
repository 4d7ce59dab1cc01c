"""data-collector's HTTP API: how much is buffered, what was delivered, where the gaps are."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from client.data_collector.state import CollectorDep

router = APIRouter(prefix="/api/v1/collector", tags=["collector"])


@router.get("/status", operation_id="collector_status", summary="Buffer depth, delivery and source state")
async def status(collector: CollectorDep) -> Response:
    buffer, forwarder = collector.buffer, collector.forwarder
    return Response(
        orjson.dumps(
            {
                "buffered": buffer.depth(),
                "delivered": forwarder.delivered,
                "rejected_by_server": forwarder.rejected,
                "server_reachable": forwarder.reachable,
                "server_unreachable_since": forwarder.unreachable_since,
                "last_error": forwarder.last_error,
                "connector_reachable": collector.connector.reachable,
                "gaps": len(buffer.gaps()),
            }
        ),
        media_type="application/json",
    )


@router.get("/gaps", operation_id="collector_gaps", summary="Silences longer than the gap threshold")
async def gaps(collector: CollectorDep) -> Response:
    return Response(orjson.dumps(collector.buffer.gaps()), media_type="application/json")
