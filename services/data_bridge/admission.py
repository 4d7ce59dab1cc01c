"""Backpressure at the ingest edge: a bound on ingest requests in flight.

Without it every request the collectors send is accepted, read and handed to the
producer, whose queue then grows without bound while the broker is slow, and a retry
of a request that timed out queues behind the request it retries. Beyond the bound a
request is answered at once with 503 and ``Retry-After`` (problem+json), before its body
is read: nothing of it is validated or published, and the collector keeps the ticks in
its buffer and retries later, which it does for any 503.

An ASGI middleware rather than a FastAPI dependency, so the refusal costs no body read,
no validation and no token check, and the route's module stays as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.kit.problems import problem_response

if TYPE_CHECKING:
    from services.data_bridge.settings import DataBridgeSettings
    from services.data_bridge.state import DataBridge
    from shared.kit.app import ServiceApp
    from shared.kit.service import Runtime

INGEST_PATH = "/api/v1/ingest/ticks"


class InflightLimit:
    """ASGI middleware: at most ``limit`` ``POST path`` requests at once; the next ones get 503."""

    def __init__(self, app: ASGIApp, *, path: str, limit: int, retry_after_s: int, registry: CollectorRegistry) -> None:
        self.app = app
        self.path = path
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.inflight = 0
        self.refused = Counter(
            "ingest_requests_refused_total",
            "Ingest requests answered 503 because the in-flight limit was reached",
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limit:
            self.refused.inc()
            response = problem_response(
                503,
                f"data-bridge is already handling {self.limit} ingest requests; retry after {self.retry_after_s} s",
                instance=self.path,
                headers={"Retry-After": str(self.retry_after_s)},
            )
            await response(scope, receive, send)
            return
        self.inflight += 1  # one event loop: no lock needed between the check and the count
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1


def install_inflight_limit(app: ServiceApp, rt: Runtime[DataBridgeSettings, DataBridge]) -> None:
    """data-bridge's ``configure`` hook: the limit from ``DATA_BRIDGE_MAX_INFLIGHT_REQUESTS``."""
    settings = rt.settings
    app.add_middleware(
        InflightLimit,
        path=INGEST_PATH,
        limit=settings.max_inflight_requests,
        retry_after_s=settings.inflight_retry_after_s,
        registry=rt.registry,
    )
