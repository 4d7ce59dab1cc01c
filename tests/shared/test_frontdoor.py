"""The front door serves its prefix like FastAPI would: same span, same user middleware, same 500s."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.responses import JSONResponse

from shared.kit.app import RouteLabel, ServiceApp, claim_route
from shared.kit.frontdoor import install_front_door
from shared.kit.problems import install_problem_handlers
from tests.support import serve


class Stamp:
    """A user middleware: stamps every response, and counts what it saw."""

    def __init__(self, app, *, seen: list) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope, receive, send):
        self.seen.append(scope["path"])

        async def stamped(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-stamp", b"1")]
            await send(message)

        await self.app(scope, receive, stamped)


async def handler(scope, receive, send):
    if scope["path"].endswith("/boom"):
        raise RuntimeError("boom")
    claim_route(scope, RouteLabel("/api/v1/things"))
    body = b'{"door": true}'
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def door_app(telemetry: Any) -> tuple[ServiceApp, list]:
    seen: list = []
    app = ServiceApp(telemetry=telemetry)
    install_problem_handlers(app)
    install_front_door(app, "/api/v1/", handler)
    app.add_middleware(Stamp, seen=seen)  # added after the door: the door still uses it

    @app.get("/other/{name}")
    async def other(name: str):
        return JSONResponse({"door": False, "name": name})

    return app, seen


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


TELEMETRY = {"tracing": True, "metrics": False, "logs": False, "operation_spans": False}


async def test_prefix_is_served_by_the_handler_inside_the_user_middleware_with_fastapis_span(spans):
    provider, exporter = spans
    app, seen = door_app({**TELEMETRY, "tracer_provider": provider})
    assert isinstance(app, FastAPI)
    async with serve(app, lifespan="off") as url, httpx.AsyncClient(base_url=url) as http:
        door = await http.get("/api/v1/things?a=1&sig=secret")
        routed = await http.get("/other/x?a=1&sig=secret")
    assert door.json() == {"door": True} and door.headers["x-stamp"] == "1"
    assert routed.json()["door"] is False and routed.headers["x-stamp"] == "1"
    assert seen == ["/api/v1/things", "/other/x"]
    door_span, routed_span = exporter.get_finished_spans()
    assert door_span.kind is routed_span.kind is SpanKind.SERVER
    assert door_span.name == "GET /api/v1/things" and door_span.attributes["http.route"] == "/api/v1/things"
    # The same attributes as FastAPI's own server span, query redaction included.
    assert set(door_span.attributes) == set(routed_span.attributes)
    for key in ("url.scheme", "http.request.method", "network.protocol.version", "server.address", "server.port"):
        assert door_span.attributes[key] == routed_span.attributes[key], key
    assert door_span.attributes["url.query"] == routed_span.attributes["url.query"] == "a=1&sig=REDACTED"
    assert door_span.attributes["http.response.status_code"] == 200


async def test_the_callers_trace_is_continued(spans):
    provider, exporter = spans
    app, _ = door_app({**TELEMETRY, "tracer_provider": provider})
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with serve(app, lifespan="off") as url, httpx.AsyncClient(base_url=url) as http:
        await http.get("/api/v1/things", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    (span,) = exporter.get_finished_spans()
    assert format(span.context.trace_id, "032x") == trace_id
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"


async def test_an_unexpected_error_is_the_apps_500_and_an_error_span(spans):
    provider, exporter = spans
    app, _ = door_app({**TELEMETRY, "tracer_provider": provider})
    async with serve(app, lifespan="off") as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/api/v1/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["http.response.status_code"] == 500


async def test_without_tracing_there_is_no_span_and_the_door_still_serves(spans):
    provider, exporter = spans
    app, _ = door_app({"tracing": False, "metrics": False, "logs": False, "tracer_provider": provider})
    async with serve(app, lifespan="off") as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/api/v1/things")).json() == {"door": True}
    assert exporter.get_finished_spans() == ()


async def test_the_door_stands_aside_when_fastapis_otel_metrics_are_live():
    meters = MeterProvider()
    app, _ = door_app({"tracing": False, "metrics": True, "logs": False, "meter_provider": meters})
    async with serve(app, lifespan="off") as url, httpx.AsyncClient(base_url=url) as http:
        # FastAPI serves it: no route and no user middleware answering the prefix here.
        assert (await http.get("/api/v1/things")).status_code == 404
    assert app.front_door is not None and app.front_door.open is False
    meters.shutdown()


async def test_it_must_be_installed_before_the_app_starts():
    app, _ = door_app({"tracing": False, "metrics": False, "logs": False})
    async with serve(app, lifespan="off") as url, httpx.AsyncClient(base_url=url) as http:
        await http.get("/other/x")
    with pytest.raises(RuntimeError):
        install_front_door(app, "/api/v2/", handler)
