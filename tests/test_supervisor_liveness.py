"""The supervisor's liveness probe: silence kills a child that was up, never one still starting."""

from __future__ import annotations

import subprocess
import time

import httpx

from infra.supervisor import LIVENESS_FAILURES, READY_TIMEOUT_S, Child, Supervisor
from shared.settings import PlatformSettings
from tests.support import bound_socket


def silent_child() -> Child:
    """A live process on a port nobody answers on (the socket is bound, never listening)."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    child = Child("silent", port, process=subprocess.Popen(["sleep", "60"]), started_at=time.monotonic())
    sock.close()
    return child


async def probe(supervisor: Supervisor, times: int, now: float) -> None:
    async with httpx.AsyncClient(timeout=0.5) as http:
        for _ in range(times):
            await supervisor._probe_liveness(http, now)


async def test_a_child_still_starting_is_not_killed_for_its_silence(tmp_path) -> None:
    supervisor = Supervisor(PlatformSettings(hats_var_dir=tmp_path), services=())
    child = silent_child()
    supervisor.children = [child]
    try:
        await probe(supervisor, LIVENESS_FAILURES + 2, time.monotonic())
        assert child.process is not None and child.process.poll() is None
        assert child.silent_probes == 0
    finally:
        assert child.process is not None
        child.process.kill()
        child.process.wait()


async def test_a_child_that_was_up_and_falls_silent_is_killed(tmp_path) -> None:
    supervisor = Supervisor(PlatformSettings(hats_var_dir=tmp_path), services=())
    child = silent_child()
    child.answered = True  # it was ready once
    supervisor.children = [child]
    assert child.process is not None
    await probe(supervisor, LIVENESS_FAILURES - 1, time.monotonic())
    assert child.process.poll() is None  # a probe or two may fail on a busy machine
    await probe(supervisor, 1, time.monotonic())
    assert child.process.wait(5) == -9


async def test_a_child_silent_past_the_start_up_allowance_is_killed(tmp_path) -> None:
    supervisor = Supervisor(PlatformSettings(hats_var_dir=tmp_path), services=())
    child = silent_child()
    supervisor.children = [child]
    assert child.process is not None
    await probe(supervisor, LIVENESS_FAILURES, child.started_at + READY_TIMEOUT_S + 1)
    assert child.process.wait(5) == -9
