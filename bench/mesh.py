"""A mesh of real service processes for a bench (``hats up --only ...`` in a fresh var dir), and
what the benches ask of it: its processes, a client with market read + write, percentiles."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import psutil

from tests.support import client_token


def start_mesh(
    var: Path, *, offset: int, services: str, env: Mapping[str, str], timeout_s: float = 120
) -> subprocess.Popen:
    """``hats up --only services`` on ``offset`` ports with ``var`` as its var dir (log level WARNING,
    ``env`` on top of this process's environment); returns once the supervisor says the mesh is up."""
    child_env = {
        **os.environ,
        **env,
        "HATS_VAR_DIR": str(var),
        "HATS_PORT_OFFSET": str(offset),
        "HATS_LOG_LEVEL": "WARNING",
    }
    out = (var / "supervisor.out").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "up", "--only", services],
        env=child_env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout_s
    while b"the mesh is up" not in (var / "supervisor.out").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("mesh did not start: " + (var / "supervisor.out").read_text()[-2000:])
        time.sleep(0.2)
    return proc


def service_pid(mesh_pid: int, name: str) -> int:
    """The process serving ``name`` in the mesh started by ``start_mesh`` (``infra.cli serve <name>``)."""
    for child in psutil.Process(mesh_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.cmdline()[-2:] == ["serve", name]:
                return child.pid
    raise SystemExit(f"no {name} process under the mesh supervisor {mesh_pid}")


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank, the higher one: p99 of 100 values is the largest)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def admin_token(var: Path, gateway: str) -> str:
    """A token of the bootstrap admin (``<var>/credentials.json``)."""
    admin = json.loads((var / "credentials.json").read_text())["admin"]
    return await client_token(gateway, admin["client_id"], admin["client_secret"])


async def bench_credentials(var: Path, gateway: str, name: str = "bench") -> tuple[dict, str]:
    """Register a client for the benchmark (market read + write) with the bootstrap admin; return it and a token."""
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(
            gateway + "/api/v1/users/clients",
            headers={"Authorization": f"Bearer {await admin_token(var, gateway)}"},
            json={"name": name, "scopes": ["market:read", "market:write"]},
        )
        r.raise_for_status()
        client = r.json()
    return client, await client_token(gateway, client["client_id"], client["client_secret"])
