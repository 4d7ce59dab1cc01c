"""``hats up`` watches the embedded broker's memory: the warning in its output and in ``hats status``,
and, opted in, the roll (a broker restart) past a second threshold.

Its own ``hats up`` (the fault tests' reduced mesh, fixture and ports) with a threshold the
freshly started broker is already over, so the first reading, taken when the mesh is up,
must warn.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest

from tests.integration.test_supervisor_faults import Up, up  # noqa: F401  (the fixture)
from tests.support import eventually

pytestmark = pytest.mark.slow


async def test_the_supervisor_warns_when_the_broker_passes_its_memory_threshold(up: Up) -> None:  # noqa: F811
    up.env["HATS_BROKER_RSS_WARN_MB"] = "1"  # Tansu holds ~15 MB before its first record
    up.start()
    await up.wait_for("the mesh is up", 90)
    await up.wait_for("over HATS_BROKER_RSS_WARN_MB (1 MB)", 30)
    assert up.output().count("over HATS_BROKER_RSS_WARN_MB") == 1  # once, not at every reading
    note = up.state()["broker"]["memory"]
    assert note.startswith("memory ") and "over the 1 MB warning" in note

    status = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "infra.cli", "status"],
        env=up.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "over the 1 MB warning" in status.stdout, status.stdout + status.stderr


async def test_past_the_roll_threshold_the_supervisor_restarts_the_broker_and_the_mesh_goes_on(up: Up) -> None:  # noqa: F811
    up.env["HATS_BROKER_RSS_ROLL_MB"] = "1"  # the first reading, when the mesh is up, is past it
    up.start()
    await up.wait_for("the mesh is up", 90)
    await up.wait_for("at HATS_BROKER_RSS_ROLL_MB (1 MB): rolling it", 30)
    await up.wait_for("the embedded broker is back", 60)
    assert up.state()["broker"]["restarts"] >= 1

    async def data_bridge_ready() -> bool:  # its bus reconnected to the new broker
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.get(up.settings.url_of("data-bridge") + "/readyz")
        return r.status_code == 200

    await eventually(data_bridge_ready, timeout_s=60)
