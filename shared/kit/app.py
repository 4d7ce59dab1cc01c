"""The HTTP frame of every service: health, readiness, metrics, traces, problem+json, offline docs.

Services do not call this directly: they are declared (``shared.kit.service.ServiceDefinition``)
and the kit builds their app with ``build_app``, whose ``lifespan(kit)`` it supplies. Tests and
the bench use ``build_app`` for bare apps of a port-matrix name.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse, Response
from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import Message, Receive, Scope, Send

from shared import ports
from shared.kit.client_key import ClientKeyMiddleware, required_key
from shared.kit.docs import install_docs
from shared.kit.logs import configure_logging
from shared.kit.problems import install_problem_handlers
from shared.kit.request_guard import RequestGuard
from shared.kit.sampling import read_budget_sampler
from shared.kit.telemetry import configure_tracing
from shared.settings import PlatformSettings

if TYPE_CHECKING:
    from shared.auth.tokens import TokenVerifier
    from shared.kit.frontdoor import FrontDoor
    from shared.kit.service import Runtime

log = logging.getLogger(__name__)

#: A readiness check returns ``None`` when the dependency is usable, else what is wrong
#: (or a ``Notice``: usable, with a remark).
ReadinessCheck = Callable[[], Awaitable[str | None]]
Lifespan = Callable[["Kit"], contextlib.AbstractAsyncContextManager[None]]

_UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Notice(str):
    """What a readiness check returns to say something without making the service unready.

    ``/readyz`` shows it as ``{"ok": true, "detail": ...}`` (e.g. data set aside for an
    operator: worth seeing, no reason for a supervisor to hold back the mesh).
    """


@dataclass
class Kit:
    """What every app has: its port-matrix entry, the platform settings, its metrics registry
    and its readiness checks (one per dependency)."""

    service: ports.Service
    settings: PlatformSettings
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)

    @functools.cached_property
    def http_metrics(self) -> tuple[Histogram, Counter]:
        """Latency histogram and request counter of the HTTP edge, labelled method/route/status."""
        return (
            Histogram(
                "http_request_duration_seconds",
                "HTTP request latency",
                ["method", "route", "status"],
                registry=self.registry,
                buckets=_LATENCY_BUCKETS,
            ),
            Counter("http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry),
        )

    @property
    def tracer(self) -> trace.Tracer:
        return trace.get_tracer(self.service.name)

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        if name in self.checks:
            raise ValueError(f"readiness check {name!r} is already registered")
        self.checks[name] = check

    async def readiness(self, timeout_s: float = 2.0) -> dict[str, dict[str, Any]]:
        async def one(name: str, check: ReadinessCheck) -> dict[str, Any]:
            try:
                problem = await asyncio.wait_for(check(), timeout_s)
            except TimeoutError:
                problem = f"no answer within {timeout_s:g} s"
            except Exception:  # a failing check is a report, not a crash
                # /readyz is unauthenticated: the exception's text (hosts, users, paths, SQL)
                # goes to the log, the answer only says that the check failed.
                log.exception("readiness check %s failed", name)
                problem = "check failed; see the service log"
            return {"ok": problem is None or isinstance(problem, Notice), **({"detail": problem} if problem else {})}

        names = list(self.checks)
        results = await asyncio.gather(*(one(n, self.checks[n]) for n in names))
        return dict(zip(names, results, strict=True))


class RequestMetricsMiddleware:
    """Pure ASGI middleware: one Prometheus latency observation and count per request.

    Server spans come from FastAPI's native OpenTelemetry support (see ``build_app``);
    this only feeds ``/metrics``, with the route template as label so cardinality stays bounded.
    """

    def __init__(self, app: Any, *, kit: Kit) -> None:
        self.app = app
        self.latency, self.requests = kit.http_metrics
        #: The labelled children per (method, route, status): ``labels()`` takes a lock and
        #: builds its key on every call; the label sets are few (route templates, statuses).
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_holder = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            labels = (scope["method"], getattr(route, "path", None) or "unmatched", str(status_holder[0]))
            children = self._children.get(labels)
            if children is None:
                children = self._children[labels] = (self.latency.labels(*labels), self.requests.labels(*labels))
            children[0].observe(elapsed)
            children[1].inc()


@dataclass(frozen=True, slots=True)
class RouteLabel:
    """Stands in for a Starlette route in ``scope["route"]``: what /metrics labels requests by."""

    path: str


def claim_route(scope: Scope, route: RouteLabel) -> None:
    """For ASGI code that answers before FastAPI's router (the gateway's proxy, fast paths):
    label the request's metrics and name its server span as the router would have."""
    scope["route"] = route
    span = trace.get_current_span()
    if span.is_recording():
        span.update_name(f"{scope['method']} {route.path}")
        span.set_attribute("http.route", route.path)


#: FastAPI's native OpenTelemetry: one SERVER span per request (W3C context from the
#: headers, route template as name). Its per-operation spans (dependencies, endpoint,
#: serialisation) would triple the spans of every request on the latency-critical
#: paths, and its OTel metrics/logs duplicate /metrics and our JSON logs.
_TELEMETRY: TelemetryConfig = {
    "tracing": True,
    "operation_spans": False,
    "metrics": False,
    "logs": False,
    "exclude": lambda scope: scope.get("path") in _UNTRACED_PATHS,
}


class ServiceApp(FastAPI):
    """A service's FastAPI app, with what the kit attaches to it (typed, instead of ``app.state``)."""

    #: Metrics registry and readiness checks.
    kit: Kit
    #: What ``shared.auth.fastapi.require`` verifies tokens with (set by the kit's ``TokenAuth``).
    token_verifier: TokenVerifier | None = None
    #: The running service (``shared.kit.service.Runtime``) for apps built from a declaration.
    runtime: Runtime[Any, Any] | None = None
    #: Serves a path prefix past FastAPI's routing (``shared.kit.frontdoor``: the gateway's ``/api/v1``).
    front_door: FrontDoor | None = None

    def __init__(self, *args: Any, telemetry: TelemetryConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, telemetry=telemetry, **kwargs)
        #: FastAPI's native telemetry settings, as given (the front door makes the same span).
        self.telemetry_config: TelemetryConfig = telemetry or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        door = self.front_door
        if door is not None and scope["type"] == "http" and scope["path"].startswith(door.prefix) and door.open:
            await door(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def build_app(
    service_name: str,
    *,
    lifespan: Lifespan | None = None,
    routers: Sequence[APIRouter] = (),
    settings: PlatformSettings | None = None,
    title: str | None = None,
    kit: Kit | None = None,
) -> ServiceApp:
    """Create the app of one service of the port matrix (``kit`` given by the kit's runtime, else new)."""
    service = ports.service(service_name)
    settings = settings or PlatformSettings()
    settings.require_external_in_production()
    required_key(service, settings)  # fails fast: the client tier off loopback needs its key
    kit = kit or Kit(service=service, settings=settings)

    @contextlib.asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(service.name, settings.hats_log_level)
        provider = _install_tracing(service.name, settings)
        try:
            if lifespan is None:
                _freeze_startup_heap()
                yield
            else:
                async with lifespan(kit):
                    _freeze_startup_heap()
                    yield
        finally:
            if provider is not None:
                provider.shutdown()

    app = ServiceApp(
        title=title or service.name,
        summary=service.job,
        lifespan=_lifespan,
        docs_url=None,  # install_docs below: Swagger UI without a CDN
        redoc_url=None,
        telemetry=_TELEMETRY,
    )
    app.kit = kit
    install_docs(app)
    install_problem_handlers(app)
    app.add_middleware(RequestMetricsMiddleware, kit=kit)
    # Outside the metrics (a refusal is counted) and inside whatever a service adds (the
    # gateway's security headers wrap it); a fast path added later falls through to it.
    app.add_middleware(RequestGuard, service_app=app)
    client_key = required_key(service, settings)
    if client_key is not None:
        app.add_middleware(ClientKeyMiddleware, key=client_key)

    @app.get("/healthz", tags=["ops"], operation_id="healthz")
    async def healthz() -> Response:
        """Liveness: the process is up and its event loop answers."""
        return _json({"status": "ok", "service": service.name})

    @app.get(
        "/readyz",
        tags=["ops"],
        operation_id="readyz",
        responses={503: {"description": "A dependency is not usable: the same document, `status: not_ready`"}},
    )
    async def readyz() -> Response:
        """Readiness: every dependency this service needs, each with its own verdict."""
        checks = await kit.readiness()
        ready = all(c["ok"] for c in checks.values())
        return _json(
            {"status": "ready" if ready else "not_ready", "service": service.name, "checks": checks},
            status=200 if ready else 503,
        )

    # Documented as what it is (Prometheus' text format), not FastAPI's default JSON.
    @app.get("/metrics", tags=["ops"], operation_id="metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        return Response(generate_latest(kit.registry), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    return app


def _freeze_startup_heap() -> None:
    """Move everything allocated during start-up out of the collector's reach.

    The imported libraries (FastAPI, pydantic, chdb, aiokafka, OpenTelemetry…) leave
    a large, permanent heap; without this every full collection walks all of it,
    which measured ~55 ms of stopped event loop in database-service, several times
    a second under load (bars API p99 37 ms -> 3.6 ms at 1,500 requests/s).
    """
    gc.collect()
    gc.freeze()


def _install_tracing(service: str, settings: PlatformSettings) -> TracerProvider | None:
    # The global provider can be set once per process; in-process test apps share the first one.
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None
    return configure_tracing(
        service,
        otlp_endpoint=settings.otel_exporter_otlp_endpoint,
        var_dir=settings.hats_var_dir,
        sampler=read_budget_sampler(settings.hats_trace_reads_per_s, settings.hats_trace_read_ratio),
    )


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


__all__ = ["Kit", "Notice", "ReadinessCheck", "ServiceApp", "build_app"]
