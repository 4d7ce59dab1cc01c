"""The supervisor under faults: a hung service, a SIGKILLed supervisor, a broker that keeps dying.

Each test runs its own ``hats up`` (a reduced mesh: data-bridge, which needs the broker
and PostgreSQL, and the gateway, whose revocation list it must load before it is ready)
with its own var dir, its own embedded broker and its own ports, so it never touches the
session mesh of ``conftest.py``: the session offset + 500 (a mesh uses 8000-8019 and 9092
plus its offset; offsets of parallel runs are 2,000 apart, so +500 falls between two
meshes, where +2000 would be the next one's). PostgreSQL is the session's server, with a
database of the test's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest

from shared.events import MarketTick
from shared.settings import PlatformSettings
from tests.conftest import PORT_OFFSET
from tests.support import eventually, own_database

pytestmark = pytest.mark.slow

FAULT_OFFSET = PORT_OFFSET + 500
SERVICE = "data-bridge"


class Up:
    """One ``hats up --only api-gateway,data-bridge`` process and what it wrote."""

    def __init__(self, var: Path, env: dict[str, str]) -> None:
        self.var, self.env = var, env
        self.settings = PlatformSettings(hats_var_dir=var, hats_port_offset=FAULT_OFFSET)
        self.out = var / "supervisor.out"
        self.process: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self) -> None:
        self._offset = self.out.stat().st_size if self.out.exists() else 0
        with self.out.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "infra.cli", "up", "--only", f"api-gateway,{SERVICE}"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def output(self) -> str:
        return self.out.read_bytes()[self._offset :].decode(errors="replace")

    async def wait_for(self, text: str, timeout_s: float = 60.0) -> None:
        async def said() -> bool:
            assert self.process is not None
            if self.process.poll() is not None and text not in self.output():
                raise AssertionError(f"hats up exited ({self.process.returncode}): {self.output()[-2000:]}")
            return text in self.output()

        await eventually(said, timeout_s=timeout_s)

    def state(self) -> dict:
        return json.loads((self.var / "supervisor.json").read_text())

    def service_pid(self) -> int | None:
        return self.state()["services"][SERVICE]["pid"]

    def children(self) -> list[psutil.Process]:
        """The supervisor's children as the kernel sees them (the broker and the services)."""
        assert self.process is not None
        return psutil.Process(self.process.pid).children()

    def broker_pid(self) -> int | None:
        for child in self.children():
            with contextlib.suppress(psutil.Error):  # a killed one not reaped yet is a zombie
                if "broker" in child.cmdline():
                    return child.pid
        return None

    def url(self) -> str:
        return self.settings.url_of(SERVICE)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)


@pytest.fixture
async def up(infra_env) -> AsyncIterator[Up]:
    _, session_env, _ = infra_env
    var = Path(tempfile.mkdtemp(prefix="hats-faults-"))
    os.chmod(var, 0o755)  # the embedded PostgreSQL's user must reach it
    server = session_env["DATABASE_URL"]
    async with own_database(server, "faults") as database:
        env = {k: v for k, v in session_env.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}  # its own embedded broker
        env.update(HATS_VAR_DIR=str(var), HATS_PORT_OFFSET=str(FAULT_OFFSET), DATABASE_URL=database)
        mesh = Up(var, env)
        try:
            yield mesh
        finally:
            mesh.stop()
            print(mesh.out.read_text(errors="replace") if mesh.out.exists() else "(no output)")  # shown on failure
            _kill_recorded(var)  # whatever a failed test left behind
    shutil.rmtree(var, ignore_errors=True)


def _kill_recorded(var: Path) -> None:
    try:
        recorded = json.loads((var / "supervisor.json").read_text()).get("processes", [])
    except (OSError, ValueError):
        return
    for entry in recorded:
        try:
            proc = psutil.Process(entry["pid"])
            if proc.cmdline() == entry["cmdline"]:
                proc.kill()
        except psutil.Error:
            pass


async def _healthy(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            return (await http.get(url + "/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_a_hung_service_is_killed_and_restarted(up: Up) -> None:
    up.start()
    await up.wait_for("the mesh is up", 90)
    hung = up.service_pid()
    assert hung is not None
    os.kill(hung, signal.SIGSTOP)  # alive as a process, silent as a service

    async def replaced() -> bool:
        pid = up.service_pid()
        return pid is not None and pid != hung and await _healthy(up.url())

    await eventually(replaced, timeout_s=60)
    assert _gone(hung)
    assert "did not answer /healthz" in up.output()
    assert up.state()["services"][SERVICE]["restarts"] == 1


async def test_up_after_a_sigkilled_supervisor_stops_what_it_left(up: Up) -> None:
    up.start()
    await up.wait_for("the mesh is up", 90)
    left = [child.pid for child in up.children()]
    assert len(left) == 3  # the gateway, data-bridge and the embedded broker
    # A stopped child cannot act on the death signal: only the run file can find it.
    os.kill(up.service_pid() or 0, signal.SIGSTOP)
    assert up.process is not None
    up.process.kill()
    up.process.wait()

    up.start()
    await up.wait_for("the mesh is up", 90)
    assert "left over from a supervisor that did not stop" in up.output()
    assert all(_gone(pid) for pid in left)
    assert await _healthy(up.url())


async def test_the_broker_killed_again_and_again_does_not_take_the_mesh_down(up: Up) -> None:
    up.start()
    await up.wait_for("the mesh is up", 90)
    for _ in range(3):
        broker = up.broker_pid()
        assert broker is not None
        os.kill(broker, signal.SIGKILL)
        await eventually(lambda b=broker: _broker_replaced(up, b), timeout_s=30)

    # Now a restart that fails: the broker's port is taken while it is down.
    broker = up.broker_pid()
    assert broker is not None
    port = up.settings.port_of("kafka")
    os.kill(broker, signal.SIGKILL)
    squatter = await _squat(port)
    try:
        await up.wait_for("restarting the embedded broker failed", 30)
        assert up.process is not None and up.process.poll() is None  # still supervising
        assert "down:" in up.state()["broker"]["status"]
        status = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "infra.cli", "status", env=up.env, stdout=subprocess.PIPE
        )
        said = (await status.communicate())[0].decode()
        assert "embedded broker: pid -" in said and "down:" in said, said
    finally:
        squatter.close()
    await eventually(lambda: _broker_replaced(up, broker), timeout_s=60)
    await eventually(lambda: _healthy(up.url()), timeout_s=60)
    assert up.process.poll() is None
    assert "stopping" not in up.output()


async def _broker_replaced(up: Up, old: int) -> bool:
    pid = up.broker_pid()
    return pid is not None and pid != old and await _broker_answers(up)


async def _broker_answers(up: Up) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=up.settings.kafka_servers, request_timeout_ms=2000)
    try:
        await admin.start()
        return MarketTick.TOPIC in await admin.list_topics()  # up, and its topics made again
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def _squat(port: int) -> socket.socket:
    """Hold ``port`` (as soon as the killed broker released it)."""
    deadline = time.monotonic() + 10
    while True:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the dead broker's TIME_WAITs
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


async def test_ctrl_c_during_start_up_stops_everything_and_says_interrupted(up: Up) -> None:
    up.start()
    await up.wait_for("starting the embedded", 30)
    await eventually(lambda: _spawned(up), timeout_s=30)
    pids = [child.pid for child in up.children()]
    assert len(pids) >= 2  # the broker and data-bridge at least (the gateway may not be spawned yet)
    assert up.process is not None
    up.process.send_signal(signal.SIGINT)
    assert up.process.wait(60) == 130
    assert "interrupted during start-up" in up.output()
    assert "not ready" not in up.output()
    assert all(_gone(pid) for pid in pids)


async def _spawned(up: Up) -> bool:
    try:
        return up.state()["services"][SERVICE]["pid"] is not None
    except (OSError, ValueError, KeyError):
        return False
