"""The supervisor's children: tied to its life, recorded in the run file, and found again.

Two layers, because neither is enough alone:

* **PR_SET_PDEATHSIG**: each child asks the kernel (in the forked child, before exec) for
  SIGTERM when its parent thread dies, so a SIGKILLed supervisor takes its children
  with it. The signal follows the *thread* that forked the child, so the supervisor
  spawns only from its main thread.
* **The run file** (``var/supervisor.json``) records every child's pid, start time and
  command line. The kernel's signal is asynchronous and a child may ignore or outlive a
  SIGTERM, so the next ``hats up`` stops whatever recorded process is still running
  before it binds a port. A pid is trusted only if its start time and command line still
  match the record: a pid the kernel reused for someone else's process is never signalled.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

#: prctl(2) option: the signal the calling process gets when its parent (thread) dies.
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ProcessRecord:
    """Who a child is, beyond its pid: the pid, its kernel start time and its command line."""

    name: str
    pid: int
    create_time: float
    cmdline: list[str]

    @classmethod
    def of(cls, name: str, pid: int) -> ProcessRecord | None:
        try:
            proc = psutil.Process(pid)
            return cls(name, pid, proc.create_time(), proc.cmdline())
        except psutil.Error:
            return None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessRecord:
        return cls(str(data["name"]), int(data["pid"]), float(data["create_time"]), list(data["cmdline"]))

    def running(self) -> psutil.Process | None:
        """The live process this record describes, or None (gone, or its pid now belongs to another)."""
        try:
            proc = psutil.Process(self.pid)
            same = abs(proc.create_time() - self.create_time) < 0.01 and proc.cmdline() == self.cmdline
            return proc if same and proc.status() != psutil.STATUS_ZOMBIE else None
        except psutil.Error:
            return None


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:
        # An exception here fails the exec, and Popen raises SubprocessError in the parent.
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        # The parent may have died between fork and prctl: then no signal will ever come.
        if os.getppid() != parent_pid:
            raise ChildProcessError("the supervisor died while starting this child")

    return preexec


def spawn_tied(argv: Sequence[str], *, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` as a child that gets SIGTERM when this process dies; output appended to ``log_path``.

    In its own session, so a Ctrl+C in the terminal reaches only the supervisor, which
    stops the children in order.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),  # runs only prctl and getppid: no locks
        )


def stop_stale(records: Sequence[ProcessRecord], *, timeout_s: float = 10.0) -> list[str]:
    """Stop the recorded processes that still run (SIGTERM, then SIGKILL after ``timeout_s``).

    Returns a line per process stopped. Records whose pid is gone or reused are skipped.
    """
    alive = [(r, p) for r in records if (p := r.running()) is not None]
    for _, proc in alive:
        _signal(proc, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        _signal(proc, signal.SIGTERM)
    _, still = psutil.wait_procs([p for _, p in alive], timeout=timeout_s)
    for proc in still:
        _signal(proc, signal.SIGKILL)
    psutil.wait_procs(still, timeout=5.0)
    killed = {p.pid for p in still}
    return [f"{r.name} (pid {r.pid}) {'killed' if r.pid in killed else 'stopped'}" for r, _ in alive]


def _signal(proc: psutil.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(psutil.Error):  # it exited meanwhile
        proc.send_signal(sig)
