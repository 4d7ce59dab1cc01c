"""docker-compose.yml exposes only the gateway, keeps the rest on an internal network, and has no
default secrets (docs/security.md, "Deployment exposure")."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shared import ports

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
#: What the file needs from the environment or `.env`, with values only a test would use.
SECRETS = {
    "POSTGRES_PASSWORD": "pg-test-secret",
    "CLICKHOUSE_PASSWORD": "ch-test-secret",
    "HATS_CLIENT_API_KEY": "client-test-key",
    "HATS_TOKEN_ISSUER": "https://api.example.com",
}
#: The only service published on every interface of the host.
PUBLIC = {"api-gateway": [ports.PUBLIC_PORT]}
CLIENT_TIER = {s.name for s in ports.implemented_services() if s.group is ports.Group.CLIENT}


def compose_command() -> list[str] | None:
    """`docker compose` (the v2 plugin) if the docker client has it, else `docker-compose`."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("COMPOSE_")}
    # --project-directory elsewhere: a developer's own .env must not fill in what the test leaves out.
    return subprocess.run(
        [*command, "-f", str(COMPOSE), "--project-directory", str(ROOT / "deploy"), "config"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def published(spec: dict) -> list[tuple[str, int]]:
    """(host interface, container port) of each ``ports`` entry ("HOST:PUBLISHED:TARGET" or "PUBLISHED:TARGET")."""
    out = []
    for entry in spec.get("ports", []):
        parts = str(entry).split(":")
        out.append((parts[0] if len(parts) == 3 else "0.0.0.0", int(parts[-1])))
    return out


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_the_file_is_valid_with_its_secrets_and_refused_without_them():
    valid = config(SECRETS)
    assert valid.returncode == 0, valid.stderr
    rendered = yaml.safe_load(valid.stdout)
    env = rendered["services"]["user-service"]["environment"]
    assert env["DATABASE_URL"] == "postgresql://hats:pg-test-secret@postgres:5432/hats"
    assert env["CLICKHOUSE_URL"] == "clickhouse://hats:ch-test-secret@clickhouse:9000/default"
    for missing in SECRETS:
        refused = config({k: v for k, v in SECRETS.items() if k != missing})
        assert refused.returncode != 0, f"starts without {missing}"
        assert missing in refused.stderr


def test_only_the_gateway_is_published_on_the_hosts_interfaces(compose):
    for name, spec in compose["services"].items():
        exposed = published(spec)
        if name in PUBLIC:
            assert [port for _, port in exposed] == PUBLIC[name]
        elif name in CLIENT_TIER:
            # The client tier has no OAuth: the host's loopback only (and its API key besides).
            assert exposed and all(host == "127.0.0.1" for host, _ in exposed), name
        else:
            assert exposed == [], f"{name} publishes {exposed}"


def test_infrastructure_and_internal_services_are_on_the_internal_network_only(compose):
    assert compose["networks"]["backend"] == {"internal": True}
    for name, spec in compose["services"].items():
        networks = spec.get("networks") or compose["x-service"]["networks"]
        if name in PUBLIC:
            assert set(networks) == {"backend", "edge"}
        elif name in CLIENT_TIER:
            assert networks == ["edge"], name  # it reaches the server through the gateway only
        else:
            assert networks == ["backend"], name


def test_no_secret_has_a_default(compose):
    text = COMPOSE.read_text()
    assert "hats:hats@" not in text and "default:@" not in text
    for name in SECRETS:
        assert f"${{{name}:?" in text, name  # required: `:?`, never `:-`
    client = {name: compose["services"][name]["environment"] for name in CLIENT_TIER}
    assert all(env["HATS_CLIENT_API_KEY"].startswith("${HATS_CLIENT_API_KEY:?") for env in client.values())
