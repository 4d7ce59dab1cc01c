"""A lean, honest HTTP/1.1 load generator for ``make bench``.

Two modes:

* :func:`fixed_rate` -- open loop with coordinated-omission correction (like
  wrk2).  Request ``i`` is *scheduled* at ``t0 + i / rate``; the requests share
  a pool of persistent keep-alive connections and a request that finds every
  connection busy waits for one.  Its latency is measured from the scheduled
  time, so time spent waiting for a connection (or because the client itself
  fell behind) is part of the reported latency.  The scheduler's timer has
  about 1 ms granularity, so a request may go out up to ``LOOKAHEAD_S`` *before*
  its scheduled time; its latency is then measured from the moment it was
  written, never from a later instant.  In short: latency = completion -
  min(scheduled, sent).
* :func:`closed_loop` -- every connection sends the next request as soon as the
  previous response has been read (maximum throughput).

Implementation: one ``asyncio.Protocol`` per connection, responses parsed by
httptools (llhttp), the request bytes are built once and written with a single
``transport.write``.  Bodies are always consumed completely (Content-Length and
chunked transfer-encoding).  Per request the Python work is two callbacks, one
clock read, a list append and a dict update.  Measured client CPU (user+sys,
uvloop, 2-core VM, loopback): ~13-14 us/request closed-loop at 64 connections,
on par with wrk (~13 us); fixed-rate 20-30 us/request at 5-20k rps, rising
to ~60 us at 1-2k rps where every request costs its own wake-ups (still only a
few % of a core).  ``LoadResult.client_cpu_s`` reports it for every run.

Everything is bounded: the run stops by itself after
``warmup + duration (+ timeout)``; requests outstanding at that point count as
errors; every socket is closed before the coroutine returns.

Use :func:`run_in_subprocess` (or ``python -m bench.loadgen``) to run the
generator in its own process so that it does not share an event loop, or a
GIL, with the process driving the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import gc
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools

__all__ = ["LoadResult", "closed_loop", "fixed_rate", "main", "run_in_subprocess"]

_now = time.monotonic  # CLOCK_MONOTONIC, ns resolution (uvloop's loop.time() is ms-cached)

#: A fixed-rate request may be written at most this much before its scheduled time.
LOOKAHEAD_S = 0.001
_BACKOFF_MIN_S = 0.02
_BACKOFF_MAX_S = 0.5

MODES = ("fixed-rate", "closed-loop")


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class LoadResult:
    mode: str  # "fixed-rate" or "closed-loop"
    connections: int
    target_rps: float | None
    duration_s: float  # measured wall time of the measurement phase
    requests: int  # completed (any status)
    errors: int  # connection errors / timeouts / requests left unanswered at the deadline
    status_counts: dict[int, int]
    achieved_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    #: process CPU time (user+sys) of the process running the generator during
    #: the measurement phase; divide by ``requests`` for CPU per request.
    client_cpu_s: float = 0.0
    #: every request's latency, sorted, in ms (rounded to the microsecond): what
    #: :meth:`pooled` needs to merge runs. Left out of comparisons and ``repr``.
    latencies_ms: tuple[float, ...] = dataclasses.field(default=(), compare=False, repr=False)

    @property
    def client_cpu_us_per_request(self) -> float:
        return self.client_cpu_s / self.requests * 1e6 if self.requests else math.nan

    def summary(self) -> str:
        target = f"target {self.target_rps:g} rps, " if self.target_rps is not None else ""
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.status_counts.items())) or "-"
        return (
            f"{self.mode}: {target}{self.connections} conns, {self.duration_s:.2f} s: "
            f"{self.requests} requests ({self.achieved_rps:.1f} rps), {self.errors} errors, "
            f"status {{{codes}}}; latency p50 {self.p50_ms:.3f} ms, p90 {self.p90_ms:.3f} ms, "
            f"p99 {self.p99_ms:.3f} ms, max {self.max_ms:.3f} ms; "
            f"client CPU {self.client_cpu_us_per_request:.1f} us/req"
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["status_counts"] = {str(k): v for k, v in self.status_counts.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LoadResult:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["status_counts"] = {int(k): int(v) for k, v in d["status_counts"].items()}
        kw["latencies_ms"] = tuple(kw.get("latencies_ms") or ())
        for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
            if kw.get(k) is None:
                kw[k] = math.nan
        return cls(**kw)

    @classmethod
    def pooled(cls, runs: Sequence[LoadResult]) -> LoadResult:
        """One result over several runs of the same mode: percentiles of all their requests together.

        For a noisy machine: runs interleaved with another measurement share its conditions,
        and a single stall weighs on the pooled p99 as much as it happened, not 3x.
        """
        if not runs or any(r.requests and len(r.latencies_ms) != r.requests for r in runs):
            raise ValueError("pooling needs runs that carry their latencies")
        status: dict[int, int] = collections.Counter()
        for r in runs:
            status.update(r.status_counts)
        first = runs[0]
        return cls.of_latencies(
            first.mode,
            first.connections,
            first.target_rps,
            sum(r.duration_s for r in runs),
            sorted(x / 1000.0 for r in runs for x in r.latencies_ms),
            errors=sum(r.errors for r in runs),
            status_counts=dict(sorted(status.items())),
            client_cpu_s=sum(r.client_cpu_s for r in runs),
        )

    @classmethod
    def of_latencies(
        cls,
        mode: str,
        connections: int,
        target_rps: float | None,
        duration_s: float,
        sorted_s: list[float],
        *,
        errors: int,
        status_counts: dict[int, int],
        client_cpu_s: float,
    ) -> LoadResult:
        """A result from every request's latency (seconds, sorted)."""
        n = len(sorted_s)
        return cls(
            mode=mode,
            connections=connections,
            target_rps=target_rps,
            duration_s=duration_s,
            requests=n,
            errors=errors,
            status_counts=status_counts,
            achieved_rps=n / duration_s if duration_s > 0 else 0.0,
            p50_ms=_percentile_ms(sorted_s, 50),
            p90_ms=_percentile_ms(sorted_s, 90),
            p99_ms=_percentile_ms(sorted_s, 99),
            max_ms=sorted_s[-1] * 1000.0 if n else math.nan,
            client_cpu_s=client_cpu_s,
            latencies_ms=tuple(round(x * 1000.0, 3) for x in sorted_s),
        )


def _percentile_ms(sorted_s: list[float], p: float) -> float:
    """Nearest-rank percentile of a sorted list of seconds, in milliseconds."""
    n = len(sorted_s)
    if n == 0:
        return math.nan
    k = min(n - 1, max(0, math.ceil(p / 100.0 * n) - 1))
    return sorted_s[k] * 1000.0


# --------------------------------------------------------------------------- request


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    request: bytes
    head: bool


def _build_target(url: str, method: str, headers: Mapping[str, str] | None, body: bytes | None) -> _Target:
    u = urlsplit(url)
    if u.scheme != "http":
        raise ValueError(f"only plain http:// URLs are supported, got {url!r}")
    if not u.hostname:
        raise ValueError(f"URL without host: {url!r}")
    method = method.upper()
    if not method.isalpha():
        raise ValueError(f"bad HTTP method {method!r}")
    port = u.port or 80
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    given = {k.lower() for k in (headers or {})}
    lines = [f"{method} {path} HTTP/1.1"]
    if "host" not in given:
        lines.append("Host: " + u.netloc.rsplit("@", 1)[-1])
    if "user-agent" not in given:
        lines.append("User-Agent: bench.loadgen")
    for k, v in (headers or {}).items():
        k, v = str(k).strip(), str(v).strip()
        if not k or any(c in k for c in "\r\n:") or any(c in v for c in "\r\n"):
            raise ValueError(f"bad header {k!r}: {v!r}")
        lines.append(f"{k}: {v}")
    if body is not None and "content-length" not in given and "transfer-encoding" not in given:
        lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
    return _Target(u.hostname, port, raw, method == "HEAD")


# --------------------------------------------------------------------------- connections


class _Conn(asyncio.Protocol):
    """One persistent connection.  ``idx >= 0`` while a request is in flight."""

    __slots__ = ("idx", "lost", "parser", "reconnecting", "run", "sent", "transport")

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.parser: Any = None
        self.idx = -1
        self.sent = 0.0
        self.lost: asyncio.Future | None = None
        self.reconnecting = False

    def new_parser(self) -> None:
        self.parser = httptools.HttpResponseParser(self)

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:  # asyncio only sets it when sock.proto == IPPROTO_TCP
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.idx = -1
        self.new_parser()
        self.lost = self.run.loop.create_future()
        self.run.on_connected(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.run.on_broken(self)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost() follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)
        self.run.on_lost(self)

    def on_message_complete(self) -> None:  # httptools callback, overridden per mode
        raise NotImplementedError


class _FixedConn(_Conn):
    __slots__ = ()
    run: _FixedRun

    def on_message_complete(self) -> None:
        now = _now()
        run = self.run
        i = self.idx
        self.idx = -1
        parser = self.parser
        if i >= run.n_warm:
            sched = run.t0 + i * run.interval
            sent = self.sent
            run.lat.append(now - (sched if sched < sent else sent))
            code = parser.get_status_code()
            sc = run.status
            sc[code] = sc.get(code, 0) + 1
            run.resolved += 1
            if run.resolved >= run.n_meas:
                run.finish()
        if not parser.should_keep_alive():
            self.transport.close()  # type: ignore[union-attr]  # a response came: connected; reconnects from connection_lost()
            return
        # dispatch the next due request on this connection, or go idle
        j = run.next_idx
        if j < run.n_total and run.running and run.t0 + j * run.interval <= now + LOOKAHEAD_S:
            run.next_idx = j + 1
            self.idx = j
            self.sent = now
            self.transport.write(run.req)  # type: ignore[union-attr]  # a response came: connected
        else:
            run.go_idle(self, now)


class _ClosedConn(_Conn):
    __slots__ = ()

    def on_message_complete(self) -> None:
        now = _now()
        run = self.run
        parser = self.parser
        if run.t_start <= now < run.t_end:
            run.lat.append(now - self.sent)
            code = parser.get_status_code()
            sc = run.status
            sc[code] = sc.get(code, 0) + 1
        if not parser.should_keep_alive():
            self.idx = -1
            self.transport.close()  # type: ignore[union-attr]  # a response came: connected
            return
        if run.running:
            self.sent = now
            self.transport.write(run.req)  # type: ignore[union-attr]  # a response came: connected
        else:
            self.idx = -1


class _HeadParser:
    """Responses to HEAD have headers only, which llhttp cannot be told, so a
    HEAD response is complete at the end of its headers and a fresh parser takes
    the next one.  Keep-alive is then decided by the headers alone (a HEAD
    response without a length is not a read-until-close response)."""

    __slots__ = ("close", "conn", "done", "parser")

    def __init__(self, conn: _Conn) -> None:
        self.conn = conn
        self.done = False
        self.close = False
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"connection" and b"close" in value.lower():
            self.close = True

    def on_headers_complete(self) -> None:
        self.done = True
        self.conn.on_message_complete()

    def feed_data(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def get_status_code(self) -> int:
        return self.parser.get_status_code()

    def should_keep_alive(self) -> bool:
        return not self.close and self.parser.get_http_version() == "1.1"


class _HeadMixin:
    run: Any
    parser: Any

    def new_parser(self) -> None:
        self.parser = _HeadParser(self)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.run.on_broken(self)
            return
        if self.parser.done:
            self.new_parser()


class _FixedHeadConn(_HeadMixin, _FixedConn):  # type: ignore[misc]
    pass


class _ClosedHeadConn(_HeadMixin, _ClosedConn):  # type: ignore[misc]
    pass


# --------------------------------------------------------------------------- runs


class _Run:
    mode = ""
    conn_cls: type[_Conn] = _Conn
    head_conn_cls: type[_Conn] = _Conn

    def __init__(self, target: _Target, connections: int, timeout_s: float) -> None:
        if connections < 1:
            raise ValueError("connections must be >= 1")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        self.loop = asyncio.get_running_loop()
        self.target = target
        self.req = target.request
        self.n_conns = connections
        self.timeout_s = timeout_s
        cls = self.head_conn_cls if target.head else self.conn_cls
        self.conns: list[_Conn] = [cls(self) for _ in range(connections)]
        self.running = False
        self.stopping = False
        self.lat: list[float] = []
        self.status: dict[int, int] = {}
        self.failures = 0
        self.t0 = math.inf
        self.t_start = math.inf
        self.t_end = math.inf
        self.cpu_start: float | None = None
        self.addr: tuple[str, int] = (target.host, target.port)
        self.family = 0
        self.reconnects: set[asyncio.Task] = set()
        self.handles: list[asyncio.Handle] = []

    # -- connection management
    async def _connect(self, conn: _Conn) -> None:
        await asyncio.wait_for(
            self.loop.create_connection(lambda: conn, self.addr[0], self.addr[1], family=self.family),
            self.timeout_s,
        )

    async def connect_all(self) -> None:
        infos = await self.loop.getaddrinfo(self.target.host, self.target.port, type=socket.SOCK_STREAM)
        if not infos:
            raise ConnectionError(f"cannot resolve {self.target.host!r}")
        self.family, _, _, _, sockaddr = infos[0]
        self.addr = (str(sockaddr[0]), int(sockaddr[1]))
        results = await asyncio.gather(*(self._connect(c) for c in self.conns), return_exceptions=True)
        failed = [c for c, r in zip(self.conns, results, strict=False) if isinstance(r, BaseException)]
        if len(failed) == len(self.conns):
            await self.close_all()
            raise ConnectionError(f"cannot connect to {self.target.host}:{self.target.port}: {results[0]!r}")
        for c in failed:
            self.spawn_reconnect(c)

    def spawn_reconnect(self, conn: _Conn) -> None:
        if self.stopping or conn.reconnecting:
            return
        conn.reconnecting = True
        t = self.loop.create_task(self._reconnect(conn))
        self.reconnects.add(t)
        t.add_done_callback(self.reconnects.discard)

    async def _reconnect(self, conn: _Conn) -> None:
        backoff = _BACKOFF_MIN_S
        try:
            while not self.stopping and conn.transport is None:
                try:
                    await self._connect(conn)
                    return
                except (TimeoutError, OSError):
                    self.on_connect_error(_now())
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
        finally:
            conn.reconnecting = False

    def on_broken(self, conn: _Conn) -> None:
        """Unparseable response: the request fails and the connection is dropped."""
        if conn.idx >= 0:
            self.request_failed(conn, _now())
            conn.idx = -1
        if conn.transport is not None:
            conn.transport.abort()

    def on_lost(self, conn: _Conn) -> None:
        if self.stopping:
            return
        if conn.idx >= 0:
            self.request_failed(conn, _now())
            conn.idx = -1
        self.forget_idle(conn)
        self.spawn_reconnect(conn)

    def watchdog(self) -> None:
        if self.stopping:
            return
        now = _now()
        limit = self.timeout_s
        for c in self.conns:
            if c.idx >= 0 and c.transport is not None and now - c.sent > limit:
                self.request_failed(c, now)
                c.idx = -1
                c.transport.abort()  # connection_lost() -> reconnect
        self.handles.append(self.loop.call_later(min(0.25, limit / 4), self.watchdog))

    def sample_cpu(self) -> None:
        self.cpu_start = time.process_time()

    async def close_all(self) -> None:
        self.running = False
        self.stopping = True
        for h in self.handles:
            h.cancel()
        for t in list(self.reconnects):
            t.cancel()
        if self.reconnects:
            await asyncio.wait(list(self.reconnects), timeout=self.timeout_s)
        waits = []
        for c in self.conns:
            if c.transport is not None:
                c.transport.close()
                if c.lost is not None:
                    waits.append(c.lost)
        if waits:
            await asyncio.wait(waits, timeout=1.0)
        for c in self.conns:  # belt and braces: never leave a socket behind
            if c.transport is not None:
                c.transport.abort()
        await asyncio.sleep(0)

    def result(self, duration: float, cpu: float, target_rps: float | None, errors: int) -> LoadResult:
        return LoadResult.of_latencies(
            self.mode,
            self.n_conns,
            target_rps,
            duration,
            sorted(self.lat),
            errors=errors,
            status_counts=dict(sorted(self.status.items())),
            client_cpu_s=cpu,
        )

    # -- mode specific
    def on_connected(self, conn: _Conn) -> None:
        raise NotImplementedError

    def request_failed(self, conn: _Conn, now: float) -> None:
        raise NotImplementedError

    def on_connect_error(self, now: float) -> None:
        raise NotImplementedError

    def forget_idle(self, conn: _Conn) -> None:
        pass


class _FixedRun(_Run):
    mode = "fixed-rate"
    conn_cls = _FixedConn
    head_conn_cls = _FixedHeadConn

    def __init__(
        self, target: _Target, connections: int, timeout_s: float, rate: float, warmup_s: float, duration_s: float
    ) -> None:
        super().__init__(target, connections, timeout_s)
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError("rate must be a positive number")
        self.rate = rate
        self.interval = 1.0 / rate
        self.n_warm = round(max(0.0, warmup_s) * rate)
        self.n_meas = max(1, round(duration_s * rate))
        self.n_total = self.n_warm + self.n_meas
        self.next_idx = 0
        self.resolved = 0  # measured requests answered or failed
        self.idle: collections.deque[_Conn] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        self.done = self.loop.create_future()

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def request_failed(self, conn: _Conn, now: float) -> None:
        if conn.idx >= self.n_warm:
            self.failures += 1
            self.resolved += 1
            if self.resolved >= self.n_meas:
                self.finish()

    def on_connect_error(self, now: float) -> None:
        # Not an error by itself: the requests it delays queue up (their latency
        # grows) and fail only if still unanswered at the deadline, which keeps
        # requests + errors == number of measured requests.
        pass

    def forget_idle(self, conn: _Conn) -> None:
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)

    def on_connected(self, conn: _Conn) -> None:
        self.go_idle(conn, _now())
        if self.running:
            self.on_timer()

    def go_idle(self, conn: _Conn, now: float) -> None:
        self.idle.append(conn)
        if self.timer is None and self.running and self.next_idx < self.n_total:
            self.arm(now)

    def arm(self, now: float) -> None:
        delay = self.t0 + self.next_idx * self.interval - now
        self.timer = self.loop.call_later(delay if delay > 0 else 0, self.on_timer)

    def on_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.running:
            return
        now = _now()
        limit = now + LOOKAHEAD_S
        idle = self.idle
        req = self.req
        while idle and self.next_idx < self.n_total:
            i = self.next_idx
            if self.t0 + i * self.interval > limit:
                break
            conn = idle.popleft()
            self.next_idx = i + 1
            conn.idx = i
            conn.sent = now
            conn.transport.write(req)  # type: ignore[union-attr]
        if idle and self.next_idx < self.n_total:
            self.arm(now)

    async def run(self) -> LoadResult:
        await self.connect_all()
        try:
            now = _now()
            self.t0 = now
            self.t_start = now + self.n_warm * self.interval
            deadline = self.t_start + self.n_meas * self.interval + self.timeout_s
            self.running = True
            self.handles.append(self.loop.call_later(max(0.0, self.t_start - now), self.sample_cpu))
            self.on_timer()
            self.watchdog()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.done), max(0.0, deadline - _now()))
            t_fin = _now()
            cpu_end = time.process_time()
            self.running = False
        finally:
            await self.close_all()
        cpu = cpu_end - self.cpu_start if self.cpu_start is not None else 0.0
        errors = self.failures + (self.n_meas - self.resolved)
        return self.result(max(t_fin - self.t_start, 1e-9), cpu, self.rate, errors)


class _ClosedRun(_Run):
    mode = "closed-loop"
    conn_cls = _ClosedConn
    head_conn_cls = _ClosedHeadConn

    def request_failed(self, conn: _Conn, now: float) -> None:
        if self.t_start <= now < self.t_end:
            self.failures += 1

    def on_connect_error(self, now: float) -> None:
        if self.t_start <= now < self.t_end:
            self.failures += 1

    def on_connected(self, conn: _Conn) -> None:
        if self.running:
            self.send(conn)

    def send(self, conn: _Conn) -> None:
        conn.idx = 0
        conn.sent = _now()
        conn.transport.write(self.req)  # type: ignore[union-attr]

    async def run(self, warmup_s: float, duration_s: float) -> LoadResult:
        if not duration_s > 0:
            raise ValueError("duration_s must be > 0")
        await self.connect_all()
        try:
            now = _now()
            self.t0 = now
            self.t_start = now + max(0.0, warmup_s)
            self.t_end = self.t_start + duration_s
            self.running = True
            self.handles.append(self.loop.call_later(max(0.0, self.t_start - now), self.sample_cpu))
            for c in self.conns:
                if c.transport is not None:
                    self.send(c)
            self.watchdog()
            await asyncio.sleep(max(0.0, self.t_end - _now()))
            while _now() < self.t_end:  # coarse timers may wake us a little early
                await asyncio.sleep(0.0005)
            cpu_end = time.process_time()
            self.running = False
        finally:
            await self.close_all()
        cpu = cpu_end - self.cpu_start if self.cpu_start is not None else 0.0
        return self.result(self.t_end - self.t_start, cpu, None, self.failures)


# --------------------------------------------------------------------------- public API


async def fixed_rate(
    url: str,
    *,
    rate: float,
    connections: int,
    duration_s: float,
    warmup_s: float = 1.0,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout_s: float = 5.0,
) -> LoadResult:
    """Open-loop load at ``rate`` requests/s, coordinated-omission corrected.

    ``round(warmup_s * rate)`` warm-up requests are sent first and not
    recorded, then ``round(duration_s * rate)`` measured ones.  ``requests +
    errors`` always equals the number of measured requests: those not answered
    within ``timeout_s`` after the last one was due count as errors.
    ``duration_s`` of the result runs from the first measured request's
    scheduled time to the last measured response (or the deadline).
    """
    target = _build_target(url, method, headers, body)
    run = _FixedRun(target, connections, timeout_s, float(rate), warmup_s, duration_s)
    return await run.run()


async def closed_loop(
    url: str,
    *,
    connections: int,
    duration_s: float,
    warmup_s: float = 1.0,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout_s: float = 5.0,
) -> LoadResult:
    """Each connection sends its next request as soon as the previous response is
    read.  Responses completing within ``[t0 + warmup_s, t0 + warmup_s +
    duration_s)`` are recorded; latency is from write to end of response.
    ``errors`` counts requests that failed (connection closed/reset, unparseable
    response, no response within ``timeout_s``) and failed (re)connection
    attempts within that window; requests still in flight at the end are
    neither."""
    target = _build_target(url, method, headers, body)
    run = _ClosedRun(target, connections, timeout_s)
    return await run.run(warmup_s, duration_s)


# --------------------------------------------------------------------------- subprocess / CLI

_KWARGS = {"url", "rate", "connections", "duration_s", "warmup_s", "method", "headers", "body", "timeout_s"}


def _normalise_mode(kind: str) -> str:
    m = kind.strip().lower().replace("_", "-")
    if m not in MODES:
        raise ValueError(f"kind must be one of {MODES} (or fixed_rate / closed_loop), got {kind!r}")
    return m


def run_in_subprocess(kind: str, **kwargs: Any) -> LoadResult:
    """Run :func:`fixed_rate` or :func:`closed_loop` (``kind``: "fixed_rate",
    "fixed-rate", "closed_loop", "closed-loop") in a fresh Python process via
    ``python -m bench.loadgen --json`` and return its result.  Takes the same
    keyword arguments as those functions (``url`` included).  Blocking; call it
    through ``asyncio.to_thread`` from async code."""
    mode = _normalise_mode(kind)
    unknown = set(kwargs) - _KWARGS
    if unknown:
        raise TypeError(f"unexpected keyword arguments: {sorted(unknown)}")
    if "url" not in kwargs or "connections" not in kwargs or "duration_s" not in kwargs:
        raise TypeError("url, connections and duration_s are required")
    if mode == "fixed-rate" and kwargs.get("rate") is None:
        raise TypeError("fixed_rate needs rate=")
    if mode == "closed-loop" and kwargs.get("rate") is not None:
        raise TypeError("closed_loop takes no rate")
    warmup = float(kwargs.get("warmup_s", 1.0))
    duration = float(kwargs["duration_s"])
    timeout = float(kwargs.get("timeout_s", 5.0))
    argv = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--json",
        "--mode",
        mode,
        "--url",
        str(kwargs["url"]),
        "--connections",
        str(int(kwargs["connections"])),
        "--duration",
        repr(duration),
        "--warmup",
        repr(warmup),
        "--timeout",
        repr(timeout),
        "--method",
        str(kwargs.get("method", "GET")),
    ]
    if mode == "fixed-rate":
        argv += ["--rate", repr(float(kwargs["rate"]))]
    for k, v in (kwargs.get("headers") or {}).items():
        argv += ["--header", f"{k}:{v}"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    body = kwargs.get("body")
    body_path = None
    try:
        if body is not None:
            fd, body_path = tempfile.mkstemp(prefix="loadgen-body-")
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            argv += ["--body-file", body_path]
        limit = warmup + duration + 3 * timeout + 30.0
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=limit)
    finally:
        if body_path is not None:
            os.unlink(body_path)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.loadgen exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if not lines:
        raise RuntimeError(f"bench.loadgen printed nothing; stderr: {proc.stderr.strip()[-2000:]}")
    return LoadResult.from_dict(json.loads(lines[-1]))


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.loadgen",
        description="HTTP/1.1 load generator: fixed-rate (with --rate, coordinated-omission "
        "corrected) or closed-loop (without).",
    )
    p.add_argument("--url", required=True)
    p.add_argument("--mode", choices=MODES, help="default: fixed-rate if --rate is given, else closed-loop")
    p.add_argument("--rate", type=float, help="requests per second (fixed-rate)")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--duration", type=float, default=10.0, help="measurement seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds (not recorded)")
    p.add_argument("--timeout", type=float, default=5.0, help="per-request / connect timeout seconds")
    p.add_argument("--method", default="GET")
    p.add_argument("--header", action="append", default=[], metavar="K:V")
    p.add_argument("--body-file", help="request body read from this file")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.add_argument("--no-uvloop", action="store_true", help="use the stock asyncio event loop")
    a = p.parse_args(argv)
    if a.mode is None:
        a.mode = "fixed-rate" if a.rate is not None else "closed-loop"
    if a.mode == "fixed-rate" and a.rate is None:
        p.error("--mode fixed-rate needs --rate")
    if a.mode == "closed-loop" and a.rate is not None:
        p.error("--rate makes no sense with --mode closed-loop")
    return a


def _loop_factory(no_uvloop: bool):
    if not no_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def main(argv: list[str] | None = None) -> int:
    a = _parse_args(argv)
    headers: dict[str, str] = {}
    for h in a.header:
        k, sep, v = h.partition(":")
        if not sep or not k.strip():
            print(f"bad --header {h!r}, expected K:V", file=sys.stderr)
            return 2
        headers[k.strip()] = v.strip()
    body = None
    if a.body_file:
        with open(a.body_file, "rb") as f:
            body = f.read()
    common = {
        "connections": a.connections,
        "duration_s": a.duration,
        "warmup_s": a.warmup,
        "method": a.method,
        "headers": headers or None,
        "body": body,
        "timeout_s": a.timeout,
    }
    coro = fixed_rate(a.url, rate=a.rate, **common) if a.mode == "fixed-rate" else closed_loop(a.url, **common)
    gc.collect()
    gc.freeze()  # nothing allocated before the run is ever scanned again
    try:
        with asyncio.Runner(loop_factory=_loop_factory(a.no_uvloop)) as runner:
            res = runner.run(coro)
    except (ConnectionError, OSError, ValueError) as e:
        print(f"bench.loadgen: {e}", file=sys.stderr)
        return 1
    if a.json:
        _write_fully((json.dumps(res.to_dict(), allow_nan=True) + "\n").encode())
    else:
        print(res.summary())
    return 0


def _write_fully(data: bytes) -> None:
    """Write all of ``data`` to stdout. The result line is larger than a pipe's buffer, and with
    PYTHONUNBUFFERED a write cut short (by a signal) would silently drop the rest through ``print``."""
    sys.stdout.flush()
    view = memoryview(data)
    while view:
        view = view[os.write(sys.stdout.fileno(), view) :]


if __name__ == "__main__":
    sys.exit(main())
