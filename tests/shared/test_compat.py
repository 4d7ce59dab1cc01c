"""What ``shared.compat`` relies on in its dependencies still holds (fast: no broker, no server).

An upgrade that breaks one of these fails here, naming the function; ``shared/compat.py``
says what it needs and why. The last test keeps private-API use out of every other module.
"""

from __future__ import annotations

import inspect
import re
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from aiokafka import ConsumerRecord
from aiokafka.consumer.fetcher import Fetcher
from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.kafka.parser import AioKafkaBatchParser
from faststream.kafka.subscriber.usecase import BatchSubscriber

from shared import compat

ROOT = Path(__file__).resolve().parents[2]


def test_the_versions_it_was_written_for_are_the_pins_and_installed():
    pins = (ROOT / "pyproject.toml").read_text()
    for package, version in compat.WRITTEN_FOR.items():
        assert metadata.version(package) == version, f"{package}: re-check shared/compat.py's uses of it"
        if package != "starlette":  # comes with fastapi's pin
            assert re.search(rf'"{re.escape(package)}(\[[^\]]*\])?=={re.escape(version)}"', pins), package


def test_aiokafka_reads_the_fetch_wait_from_its_fetcher_on_every_request():
    assert re.search(r"FetchRequest\(\s*self\._fetch_max_wait_ms", inspect.getsource(Fetcher))
    consumer = SimpleNamespace(_fetcher=SimpleNamespace(_fetch_max_wait_ms=10))
    assert compat.set_fetch_max_wait(consumer, 200) and consumer._fetcher._fetch_max_wait_ms == 200
    assert not compat.set_fetch_max_wait(SimpleNamespace(), 200)  # not started
    assert not compat.set_fetch_max_wait(None, 200)


def test_faststream_reads_the_batch_timeout_from_the_subscriber_on_every_poll():
    assert "self.batch_timeout_ms" in inspect.getsource(BatchSubscriber.get_msg)
    source = inspect.getsource(BatchSubscriber)
    assert "timeout_ms=self.batch_timeout_ms" in source or "self.batch_timeout_ms / 1000" in source


def test_a_subscriber_exposes_its_consumer():
    broker = KafkaBroker("localhost:9")
    subscriber = broker.subscriber("compat.test", batch=True)
    assert compat.running_consumer(subscriber) is None  # not started
    assert "consumer" in dir(subscriber)


def test_murmur2_is_kafkas():
    # Kafka's own test vectors (clients/src/test/.../UtilsTest.java), as unsigned 32-bit values.
    vectors = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, signed in vectors.items():
        assert compat.murmur2(key) == signed & 0xFFFFFFFF, key


async def test_the_batch_parser_parts_build_faststreams_message():
    parser = AioKafkaBatchParser(KafkaMessage, None)
    parts = compat.batch_parser_parts(parser.parse_batch)
    assert parts is not None
    message_class, pattern, _consumer = parts
    assert message_class is KafkaMessage and pattern is None
    assert compat.batch_parser_parts(lambda records: records) is None
    assert compat.topic_path(None, "market.ticks.v1") == {}
    assert compat.topic_path(re.compile(r"market\.(?P<kind>\w+)\.v1"), "market.ticks.v1") == {"kind": "ticks"}
    record = ConsumerRecord("t", 0, 7, 1, 0, b"k", b"v", None, 1, 1, (("correlation_id", b"c"),))
    message = await parser.parse_batch((record,))
    assert isinstance(message, message_class) and message.raw_message == (record,)


def test_aiokafka_metadata_requests_never_ask_the_broker_to_create_a_topic():
    import aiokafka.admin.client
    import aiokafka.client
    from aiokafka.protocol.metadata import MetadataRequest_v0, MetadataRequest_v5

    import shared.bus  # noqa: F401  (installs it on import)

    compat.forbid_topic_auto_creation()  # a second call changes nothing
    for module in (aiokafka.client, aiokafka.admin.client):
        # Both build their requests by this module-level name, with the topics only.
        assert re.search(r"MetadataRequest\((list\(topics\)|topics)", inspect.getsource(module))
        request = module.MetadataRequest(["a.topic"])
        assert request.build(MetadataRequest_v5).allow_auto_topic_creation is False
        assert request.build(MetadataRequest_v0).topics == ["a.topic"]
    assert aiokafka.client.MetadataRequest is aiokafka.admin.client.MetadataRequest


def test_the_broker_config_holds_the_admin_client():
    config = KafkaBroker("localhost:9").config  # a composition that delegates to the Kafka config
    assert isinstance(inspect.getattr_static(type(config.broker_config), "admin_client"), property)
    assert compat.admin_client(SimpleNamespace(config=SimpleNamespace(admin_client="admin"))) == "admin"


async def test_innermost_middleware_runs_inside_the_others():
    order: list[str] = []

    def recorder(name: str):
        class Recorder:
            def __init__(self, app, **_: object) -> None:
                self.app = app

            async def __call__(self, scope, receive, send) -> None:
                if scope["type"] == "http":
                    order.append(name)
                await self.app(scope, receive, send)

        return Recorder

    app = FastAPI()
    app.add_middleware(recorder("outer"))
    compat.add_innermost_middleware(app, recorder("inner"))
    app.add_middleware(recorder("outermost"))

    @app.get("/x")
    async def x() -> dict[str, bool]:
        return {"ok": True}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/x")).json() == {"ok": True}
        assert order == ["outermost", "outer", "inner"]
        with pytest.raises(RuntimeError, match="before the app starts"):
            compat.add_innermost_middleware(app, recorder("late"))


def test_fastapi_offline_ships_swagger_ui():
    files = compat.swagger_ui_files()
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
        assert (files / name).stat().st_size > 0, name
    assert metadata.version("fastapi-offline") == compat.WRITTEN_FOR["fastapi-offline"]


#: Private attributes of other people's objects are only reached in shared/compat.py. The
#: namedtuple API (``_asdict``...) is public despite its underscore; a module may reach the
#: private fields of its own classes (those it defines: ``self._x = ...``, ``def _x``, ``"_x"``).
_PRIVATE = re.compile(r"\b(?!self\b|cls\b)([A-Za-z_][A-Za-z0-9_]*)\._(?!_)([a-z][A-Za-z0-9_]*)")
_ALLOWED = {"asdict", "replace", "fields", "make"}
_PRIVATE_IMPORTS = re.compile(r"^\s*(?:from|import)\s+\w+\._internal", re.M)


def _defines(text: str, name: str) -> bool:
    """Whether the module itself defines ``name`` (an attribute it sets, a method, a slot)."""
    return bool(re.search(rf"self\.{name}\s*(:[^=]*)?=|def {name}\(|[\"']{name}[\"']|^\s+{name}\s*:", text, re.M))


def test_no_other_module_reaches_into_a_dependencys_private_api():
    offenders = []
    for path in sorted(
        p for top in ("shared", "services", "client", "infra", "bench") for p in (ROOT / top).rglob("*.py")
    ):
        relative = path.relative_to(ROOT).as_posix()
        if relative == "shared/compat.py":
            continue
        text = path.read_text()
        offenders += [f"{relative}: {m.group(0)}" for m in _PRIVATE_IMPORTS.finditer(text)]
        for match in _PRIVATE.finditer(text):
            attribute = match.group(2)
            if attribute in _ALLOWED or _defines(text, "_" + attribute):
                continue
            offenders.append(f"{relative}: {match.group(0)}")
    assert not offenders, "use shared/compat.py for: " + "; ".join(offenders)


def test_pydantic_keeps_field_constraints_it_has_no_class_for_in_its_general_metadata():
    from decimal import Decimal
    from typing import Annotated

    from pydantic import BaseModel, Field

    class Model(BaseModel):
        price: Annotated[Decimal, Field(gt=0, max_digits=28, decimal_places=10)]
        symbol: Annotated[str, Field(pattern="^[A-Z]+$")]

    general = [m for f in Model.model_fields.values() for m in f.metadata if compat.is_pydantic_general_metadata(m)]
    assert [vars(m) for m in general] == [{"max_digits": 28, "decimal_places": 10}, {"pattern": "^[A-Z]+$"}]
    assert not any(compat.is_pydantic_general_metadata(m) for m in Model.model_fields["price"].metadata[:1])


def test_opentelemetry_placeholders_and_no_op_providers_are_told_from_real_ones():
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    assert not compat.otel_provider_configured(trace.ProxyTracerProvider())
    assert not compat.otel_provider_configured(trace.NoOpTracerProvider())
    assert not compat.otel_provider_configured(metrics.NoOpMeterProvider())
    placeholder = type(metrics.get_meter_provider())  # nothing sets a global meter provider here
    assert (placeholder.__module__, placeholder.__name__) in compat._DEFERRED_OTEL_PROVIDERS
    assert not compat.otel_provider_configured(compat.otel_logger_provider())
    assert compat.otel_provider_configured(TracerProvider()) and compat.otel_provider_configured(MeterProvider())


async def test_uvicorns_httptools_protocol_writes_only_through_the_transport_it_was_given():
    import asyncio

    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    wrapped: list = []

    def wrap(transport, loop):
        wrapped.append((transport, loop))
        return transport

    cls = compat.httptools_protocol_with_transport(wrap)
    assert issubclass(cls, HttpToolsProtocol)
    source = inspect.getsource(HttpToolsProtocol)
    assert "self.transport = transport" in source and "self.transport.write(" in source
    loop = asyncio.get_running_loop()
    config = Config(app=lambda *_: None, http="httptools")
    config.load()
    protocol = cls(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = SimpleNamespace(get_extra_info=lambda *_: None, is_closing=lambda: False, set_protocol=lambda _: None)
    protocol.connection_made(transport)
    assert wrapped == [(transport, loop)] and protocol.transport is transport
