"""``hats up``: infrastructure first, then every implemented service as its own process.

One supervisor per host (a lock under ``var/``), one process per service (the
port guard makes a second copy impossible, and the supervisor never starts one).
Children die with the supervisor and are recorded in ``var/supervisor.json``
(``infra.proctree``); a child that stops answering ``/healthz`` is killed and
restarted; the embedded broker is restarted with backoff and never takes the mesh down,
and its memory, which only grows, is watched (``infra.broker_memory``).
Scaling out is running more instances on other hosts against the same Kafka:
services keep no host-local state that would prevent it (consumer groups,
checkpoints in PostgreSQL, chdb only in embedded single-host mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from infra import kafka, postgres
from infra.broker_memory import CHECK_INTERVAL_S as MEMORY_CHECK_INTERVAL_S
from infra.broker_memory import BrokerMemoryWatch, resident_bytes
from infra.proctree import ProcessRecord, spawn_tied, stop_stale
from shared import ports
from shared.bus.broker import ensure_topics
from shared.kit.runner import EXIT_PORT_TAKEN
from shared.settings import PlatformSettings

STOP_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 90.0
MAX_BACKOFF_S = 30.0
#: A service that stayed up this long has its restart backoff reset.
STABLE_AFTER_S = 60.0
#: Liveness: every child's ``/healthz`` is asked this often, with this timeout; this many
#: failures in a row and the child is killed (then restarted with the usual backoff). A
#: child that has never answered since it was started is given ``READY_TIMEOUT_S`` first:
#: a service slow to start is not hung.
LIVENESS_INTERVAL_S = 2.0
LIVENESS_TIMEOUT_S = 1.5
LIVENESS_FAILURES = 3


def say(message: str) -> None:
    print(f"[hats] {message}", flush=True)


@dataclass
class Child:
    name: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start_at: float = 0.0
    backoff_s: float = 1.0
    record: ProcessRecord | None = None
    #: ``/healthz`` answered since this process started (from then on, silence counts).
    answered: bool = False
    silent_probes: int = 0


@dataclass
class BrokerState:
    """The embedded broker as the supervisor tends it: restarted with backoff, never fatal."""

    process: subprocess.Popen[bytes] | None = None
    record: ProcessRecord | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start_at: float = 0.0
    backoff_s: float = 1.0
    status: str = "running"
    #: Its resident memory, read every ``MEMORY_CHECK_INTERVAL_S`` (memory storage only grows).
    memory: BrokerMemoryWatch = field(default_factory=lambda: BrokerMemoryWatch(0))


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived before the mesh was up."""


@dataclass
class StateFile:
    """What ``hats status`` reads: written by the running supervisor."""

    supervisor_pid: int
    started_at: float
    var_dir: str
    kafka: str
    database: str
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The embedded broker's pid, restarts and status (None with an external Kafka).
    broker: dict[str, Any] | None = None
    #: Every child as ``ProcessRecord``: what the next ``hats up`` stops if we die.
    processes: list[dict[str, Any]] = field(default_factory=list)


class AlreadyRunning(RuntimeError):
    pass


class SupervisorLock:
    """An exclusive ``flock`` on ``var/supervisor.lock``: released by the kernel if we die."""

    def __init__(self, var_dir: Path) -> None:
        self.path = var_dir / "supervisor.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode().strip() or "?"
            os.close(fd)
            raise AlreadyRunning(
                f"hats is already running here (supervisor pid {holder}); see `hats status`, stop it with `hats down`"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_holder(var_dir: Path) -> int | None:
    """The pid of a running supervisor, or None."""
    path = var_dir / "supervisor.lock"
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = path.read_text().strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class Supervisor:
    def __init__(self, settings: PlatformSettings, services: tuple[ports.Service, ...] | None = None) -> None:
        self.settings = settings
        self.var = settings.hats_var_dir
        self.logs = self.var / "logs"
        self.lock = SupervisorLock(self.var)
        self.broker: BrokerState | None = None
        self.database = "external (DATABASE_URL)"
        self.children = [
            Child(s.name, settings.port_of(s.name))
            for s in (services if services is not None else ports.implemented_services())
        ]
        self._stopping = asyncio.Event()
        self._env: dict[str, str] = {}

    # -- lifecycle ------------------------------------------------------------------

    async def run(self) -> int:
        self.lock.acquire()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        try:
            await asyncio.to_thread(self._stop_stale_children)
            await self._start_infrastructure()
            self._check_interrupted()
            credentials = self.var / "credentials.json"
            had_credentials = credentials.exists()
            for child in self.children:
                self._spawn(child)
            await self._wait_ready()
            self._print_status()
            if not had_credentials and credentials.exists():
                self._print_new_credentials(credentials)
            await self._watch()
            return 0
        except Interrupted:
            say("interrupted during start-up")
            return 130
        except Exception as exc:
            say(f"cannot start: {exc}")
            return 1
        finally:
            await self._stop_all()
            self.lock.release()

    def _check_interrupted(self) -> None:
        if self._stopping.is_set():
            raise Interrupted

    def _stop_stale_children(self) -> None:
        """Stop what a supervisor that died without stopping (SIGKILL, OOM) left running.

        We hold the lock, so no live supervisor owns them. Only processes whose pid, start
        time and command line match the run file are touched.
        """
        path = self.var / "supervisor.json"
        try:
            recorded = json.loads(path.read_text()).get("processes", [])
            records = [ProcessRecord.from_dict(r) for r in recorded]
        except (OSError, ValueError, KeyError, TypeError):
            return
        for line in stop_stale(records, timeout_s=STOP_TIMEOUT_S):
            say(f"left over from a supervisor that did not stop: {line}")
        path.unlink(missing_ok=True)

    def _spawn_broker(self) -> subprocess.Popen[bytes]:
        """Tansu as a child tied to us (from the main thread: the death signal follows the forking thread)."""

        def tied(argv: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
            return spawn_tied(argv, env=dict(os.environ), log_path=log_path)

        return kafka.spawn_broker(self.settings.port_of("kafka"), self.logs / "kafka.log", tied)

    async def _start_infrastructure(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        env = {"HATS_VAR_DIR": str(self.var), "PYTHONUNBUFFERED": "1"}
        if self.settings.embedded_kafka:
            port = self.settings.port_of("kafka")
            say(f"starting the embedded Kafka-compatible broker (Tansu) on 127.0.0.1:{port}")
            process = self._spawn_broker()
            self.broker = BrokerState(
                process,
                ProcessRecord.of("kafka", process.pid),
                started_at=time.monotonic(),
                memory=BrokerMemoryWatch(
                    self.settings.hats_broker_rss_warn_mb, roll_mb=self.settings.hats_broker_rss_roll_mb
                ),
            )
            self._write_state()
            await asyncio.to_thread(kafka.wait_listening, process, port, self.logs / "kafka.log")
        self._check_interrupted()
        created = await ensure_topics(self.settings.kafka_servers)
        if created:
            say(f"created topics: {', '.join(created)}")
        url = await asyncio.to_thread(postgres.database_url, self.settings)
        if self.settings.embedded_postgres:
            self.database = f"embedded PostgreSQL, data in {self.var / 'postgres'}"
            env["DATABASE_URL"] = url
        self._env = env

    def _spawn(self, child: Child) -> None:
        child.process = spawn_tied(
            [sys.executable, "-m", "infra.cli", "serve", child.name],
            env={**os.environ, **self._env},
            log_path=self.logs / f"{child.name}.log",
        )
        child.record = ProcessRecord.of(child.name, child.process.pid)
        child.started_at = time.monotonic()
        child.answered, child.silent_probes = False, 0
        self._write_state()

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        pending = {c.name: c for c in self.children}
        async with httpx.AsyncClient(timeout=2.0) as http:
            while pending and time.monotonic() < deadline and not self._stopping.is_set():
                for name, child in list(pending.items()):
                    if child.process is not None and child.process.poll() is not None:
                        raise RuntimeError(self._exit_reason(child))
                    try:
                        if (await http.get(f"http://127.0.0.1:{child.port}/readyz")).status_code == 200:
                            child.answered = True  # ready: from now on its silence counts
                            del pending[name]
                    except httpx.HTTPError:
                        pass
                await asyncio.sleep(0.2)
        self._check_interrupted()
        if pending:
            raise RuntimeError(
                f"not ready within {READY_TIMEOUT_S:.0f}s: {', '.join(pending)} (see {self.logs}/<service>.log)"
            )

    def _exit_reason(self, child: Child) -> str:
        code = child.process.returncode if child.process else None
        tail = _tail(self.logs / f"{child.name}.log")
        if code == EXIT_PORT_TAKEN:
            return f"{child.name} refused to start: {tail}"
        return f"{child.name} exited with code {code}: {tail}"

    async def _watch(self) -> None:
        next_probe = time.monotonic() + LIVENESS_INTERVAL_S
        next_memory_check = 0.0  # at once: a broker already too big is said when the mesh is up
        async with httpx.AsyncClient(timeout=LIVENESS_TIMEOUT_S) as http:
            while not self._stopping.is_set():
                now = time.monotonic()
                if self.broker is not None:
                    await self._tend_broker(self.broker, now)
                    if now >= next_memory_check:
                        next_memory_check = now + MEMORY_CHECK_INTERVAL_S
                        self._check_broker_memory(self.broker)
                if now >= next_probe:
                    next_probe = now + LIVENESS_INTERVAL_S
                    await self._probe_liveness(http, now)
                for child in self.children:
                    self._tend_child(child, time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 0.5)

    def _tend_child(self, child: Child, now: float) -> None:
        process = child.process
        if process is not None and process.poll() is not None:
            if now - child.started_at > STABLE_AFTER_S:
                child.backoff_s = 1.0
            say(f"{self._exit_reason(child)}; restarting in {child.backoff_s:.0f}s")
            child.process = child.record = None
            child.next_start_at = now + child.backoff_s
            child.backoff_s = min(child.backoff_s * 2, MAX_BACKOFF_S)
            self._write_state()
        elif process is None and now >= child.next_start_at:
            child.restarts += 1
            say(f"restarting {child.name} (restart #{child.restarts})")
            self._spawn(child)

    async def _probe_liveness(self, http: httpx.AsyncClient, now: float) -> None:
        """Kill a child whose ``/healthz`` stays silent: a hung process never exits by itself."""
        running = [c for c in self.children if c.process is not None and c.process.poll() is None]
        answers = await asyncio.gather(*(_answers(http, c.port) for c in running))
        for child, answered in zip(running, answers, strict=True):
            if answered:
                child.answered, child.silent_probes = True, 0
                continue
            if not child.answered and now - child.started_at < READY_TIMEOUT_S:
                continue  # still starting
            child.silent_probes += 1
            if child.silent_probes >= LIVENESS_FAILURES and child.process is not None:
                say(
                    f"{child.name} (pid {child.process.pid}) did not answer /healthz {child.silent_probes} times "
                    f"in a row ({LIVENESS_TIMEOUT_S:g}s timeout); killing it"
                )
                child.process.kill()

    async def _tend_broker(self, broker: BrokerState, now: float) -> None:
        """Restart an exited broker with exponential backoff; a failed attempt only schedules the next."""
        if broker.process is not None and broker.process.poll() is not None:
            if now - broker.started_at > STABLE_AFTER_S:
                broker.backoff_s = 1.0
            self._broker_down(broker, now, f"the embedded broker exited ({broker.process.returncode})")
            return
        if broker.process is not None or now < broker.next_start_at:
            return
        broker.restarts += 1
        say(f"restarting the embedded broker (restart #{broker.restarts})")
        port = self.settings.port_of("kafka")
        try:
            broker.process = self._spawn_broker()
            broker.record = ProcessRecord.of("kafka", broker.process.pid)
            await asyncio.to_thread(kafka.wait_listening, broker.process, port, self.logs / "kafka.log")
            # Memory storage: the new broker has no topics; consumers must find theirs again.
            created = await ensure_topics(self.settings.kafka_servers)
        except Exception as exc:  # whatever failed, the answer is to try again later
            if broker.process is not None and broker.process.poll() is None:
                broker.process.kill()
                broker.process.wait()
            self._broker_down(broker, time.monotonic(), f"restarting the embedded broker failed: {exc}")
            return
        broker.started_at = time.monotonic()
        broker.status = "running"
        say(f"the embedded broker is back (pid {broker.process.pid}); topics ensured: {len(created)} created")
        self._write_state()

    def _check_broker_memory(self, broker: BrokerState) -> None:
        """Read the broker's memory; warn past the warning threshold, restart it past the opt-in roll one."""
        process = broker.process
        if process is None or process.poll() is not None:
            return
        rss = resident_bytes(process.pid)
        if rss is None:
            return
        warning = broker.memory.observe(process.pid, rss)
        if warning:
            say(warning)
        rolling = broker.memory.roll(process.pid, rss)
        if rolling:
            say(rolling)
            process.terminate()  # the restart path of a crashed broker takes it from here (backoff, topics, epoch)
        self._write_state()

    def _broker_down(self, broker: BrokerState, now: float, reason: str) -> None:
        broker.process = broker.record = None
        broker.next_start_at = now + broker.backoff_s
        broker.status = f"down: {reason}; next attempt in {broker.backoff_s:.0f}s"
        say(f"{reason}; restarting it in {broker.backoff_s:.0f}s")
        broker.backoff_s = min(broker.backoff_s * 2, MAX_BACKOFF_S)
        self._write_state()

    async def _stop_all(self) -> None:
        say("stopping")
        for child in reversed(self.children):
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            if child.process is not None:
                await _wait_or_kill(child.process, child.name)
        if self.broker is not None and self.broker.process is not None:
            self.broker.process.send_signal(signal.SIGTERM)
            await _wait_or_kill(self.broker.process, "kafka")
        if self.settings.embedded_postgres:
            await asyncio.to_thread(postgres.stop_embedded, self.var)
        (self.var / "supervisor.json").unlink(missing_ok=True)
        say("stopped; every port is free")

    # -- reporting --------------------------------------------------------------------

    def _write_state(self) -> None:
        broker = self.broker
        records = [c.record for c in self.children] + [broker.record if broker else None]
        state = StateFile(
            os.getpid(),
            time.time(),
            str(self.var),
            self.settings.kafka_servers,
            self.database,
            {
                c.name: {"port": c.port, "pid": c.process.pid if c.process else None, "restarts": c.restarts}
                for c in self.children
            },
            broker={
                "pid": broker.process.pid if broker.process else None,
                "restarts": broker.restarts,
                "status": broker.status,
                "memory": broker.memory.note(),
            }
            if broker
            else None,
            processes=[r.as_dict() for r in records if r is not None],
        )
        # Written whole and renamed: a reader (or the next `hats up`) never sees half a file.
        path = self.var / "supervisor.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        tmp.replace(path)

    def _print_status(self) -> None:
        say("the mesh is up")
        print(f"  {'service':<22}{'port':>6}  {'pid':>7}  url")
        for child in self.children:
            pid = child.process.pid if child.process else "-"
            print(f"  {child.name:<22}{child.port:>6}  {pid:>7}  http://127.0.0.1:{child.port}/docs")
        print(f"  kafka: {self.settings.kafka_servers}   postgres: {self.database}")
        print(f"  logs: {self.logs}/<service>.log   traces: {self.var / 'traces'}")
        if any(c.name == "api-gateway" for c in self.children):
            gateway = self.settings.url_of("api-gateway")
            credentials = self.var / "credentials.json"
            print(f"  API and docs: {gateway}/docs (Authorize with a client id and secret from {credentials})")
            example = f"{gateway}/api/v1/market/bars?symbol=EURUSD&timeframe=M1&limit=5"
            print(f"  try: curl -H 'Authorization: Bearer TOKEN' '{example}'")
        print("  `hats status` in another terminal; Ctrl+C (or `hats down`) stops everything", flush=True)

    def _print_new_credentials(self, path: Path) -> None:
        """user-service's first start created the bootstrap clients: show them this once."""
        try:
            created = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        say(f"first start: created the bootstrap OAuth2 clients (kept in {path}, mode 0600; shown only now)")
        for name in ("admin", "data-collector"):
            entry = created.get(name) or {}
            if "client_id" in entry:
                secret = entry.get("client_secret", "(from env)")
                print(f"  {name:<15} client_id {entry['client_id']}   client_secret {secret}")
        gateway = self.settings.url_of("api-gateway")
        print(
            f"  token: curl -u CLIENT_ID:CLIENT_SECRET -d grant_type=client_credentials {gateway}/oauth2/token",
            flush=True,
        )


async def _wait_or_kill(process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if process.poll() is None:
        say(f"{name} did not stop within {STOP_TIMEOUT_S:.0f}s; killing it")
        process.kill()
        process.wait()


async def _answers(http: httpx.AsyncClient, port: int) -> bool:
    try:
        return (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "(no log)"
    return " | ".join(line[:300] for line in text[-lines:])
