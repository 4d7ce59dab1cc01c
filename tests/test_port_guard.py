"""A service refuses a taken port: non-zero exit, and the message names the port and the holder."""

import os
import socket
import subprocess
import sys

from shared.kit.runner import EXIT_PORT_TAKEN
from shared.ports import service


def test_service_refuses_a_taken_port_and_names_the_holder(tmp_path):
    offset = 23000
    port = service("data-bridge").port + offset
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        env = {**os.environ, "HATS_PORT_OFFSET": str(offset), "HATS_VAR_DIR": str(tmp_path)}
        done = subprocess.run(
            [sys.executable, "-m", "infra.cli", "serve", "data-bridge"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.close()
    assert done.returncode == EXIT_PORT_TAKEN
    assert f"port {port}" in done.stderr
    assert f"pid {os.getpid()}" in done.stderr


def test_unknown_service_is_refused():
    done = subprocess.run(
        [sys.executable, "-m", "infra.cli", "serve", "no-such-service"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "unknown service" in done.stderr


def test_the_embedded_broker_refuses_a_port_an_outgoing_connection_holds(tmp_path):
    """Offsets can put a port in the ephemeral range: a client connection may hold it without listening."""
    import pytest

    from infra.kafka import start_broker
    from shared.kit.portguard import PortTaken

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.socket()
    client.bind(("127.0.0.1", 0))
    port = client.getsockname()[1]
    client.connect(server.getsockname())
    try:
        with pytest.raises(PortTaken) as refused:
            start_broker(port, tmp_path / "kafka.log", timeout_s=5)
    finally:
        client.close()
        server.close()
    message = str(refused.value)
    assert f"port {port}" in message and f"pid {os.getpid()}" in message and "connection from that port" in message
