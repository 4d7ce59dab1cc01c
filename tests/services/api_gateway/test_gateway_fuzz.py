"""The gateway's OpenAPI document, fuzzed with schemathesis against the real gateway.

The gateway is ``SERVICE`` as the kit builds it, with echo upstreams behind ``/api/v1``
(``edge_testkit``), served in a thread of its own: schemathesis calls it synchronously.
Every operation of its ``/openapi.json`` (its own OAuth2 and ops endpoints and the merged
upstream ones) gets generated requests, valid and invalid; no answer may be a 5xx or break
the document's own description of it (status, content type, headers, body schema).
Bounded: a fixed number of examples per operation (well under 90 s in all).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator

import pytest
import schemathesis
from edge_testkit import EdgeMesh, edge_mesh
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from services.api_gateway.settings import GatewaySettings
from shared.auth.scopes import MARKET_READ, MARKET_WRITE

#: Brute-force limits the fuzzer's deliberate failures do not reach (it sends many bad secrets).
SETTINGS = GatewaySettings(auth_failures_per_client=100_000, auth_failures_per_ip=100_000)
EXAMPLES_PER_OPERATION = 50


class ServedGateway:
    """``edge_mesh`` running in its own thread and event loop until ``stop``."""

    def __init__(self, infra_env) -> None:
        self._infra_env = infra_env
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), name="fuzzed-gateway", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.mesh: EdgeMesh | None = None
        self.error: BaseException | None = None

    async def _run(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            async with edge_mesh(self._infra_env, SETTINGS, areas=("market", "ingest", "users")) as mesh:
                self.mesh = mesh
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            raise

    def start(self) -> EdgeMesh:
        self._thread.start()
        assert self._ready.wait(120), "the gateway did not start in 120 s"
        if self.error is not None:
            raise self.error
        assert self.mesh is not None
        return self.mesh

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module")
def served(infra_env) -> Iterator[EdgeMesh]:
    gateway = ServedGateway(infra_env)
    try:
        yield gateway.start()
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def bearer(served) -> dict[str, str]:
    return {"Authorization": f"Bearer {served.tokens.mint('fuzzer', [MARKET_READ, MARKET_WRITE])}"}


def fuzz(operation, bearer: dict[str, str], mode: GenerationMode) -> None:
    """``EXAMPLES_PER_OPERATION`` generated requests to one operation, each answer validated.

    Positive requests fit the document (answered as it says); negative ones do not (refused
    with a documented 4xx, never a 5xx)."""
    # The /api/v1 operations need a token (the gateway's oauth2 scheme); the token endpoint
    # authenticates clients itself and must not get one.
    headers = bearer if operation.path.startswith("/api/v1/") else None

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same examples every run: a failure here is reproducible
        database=None,
    )
    def one(case) -> None:
        case.call_and_validate(headers=headers, timeout=10)

    one()


def test_the_gateways_openapi_holds_for_generated_requests(served, bearer):
    # Driven from here rather than by schemathesis' pytest plugin, which does not run under pytest 9.
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 10  # the gateway's own and the upstreams' merged ones
    failures = []
    for operation, mode in itertools.product(operations, GenerationMode):
        try:
            fuzz(operation, bearer, mode)
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, operation  # nothing to get wrong: no parameters, no body
        except (Exception, BaseExceptionGroup) as exc:  # every operation is fuzzed; the failures are reported together
            failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
