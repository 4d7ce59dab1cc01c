"""Tests for bench.loadgen against a tiny in-process uvicorn server.

Assertions are about counts and correctness only, never about speed."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import math
import os
import socket
import sys
import time
from pathlib import Path

import pytest
import pytest_asyncio
import uvicorn

from bench.loadgen import LoadResult, _percentile_ms, closed_loop, fixed_rate, run_in_subprocess

ROOT = Path(__file__).resolve().parents[2]

HITS: collections.Counter[str] = collections.Counter()
BODIES: list[tuple[bytes, bytes | None]] = []


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    HITS[path + "?" + scope["query_string"].decode()] += 1
    if path == "/chunked":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for _ in range(3):
            await send({"type": "http.response.body", "body": b"x" * 700, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/echo":
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        BODIES.append((body, dict(scope["headers"]).get(b"x-test")))
        out = str(len(body)).encode()
        await send(
            {"type": "http.response.start", "status": 201, "headers": [(b"content-length", str(len(out)).encode())]}
        )
        await send({"type": "http.response.body", "body": out})
        return
    if path == "/slow":
        await asyncio.sleep(0.6)
    status = {"/404": 404, "/500": 500}.get(path, 200)
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    if path == "/close":
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server():
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets
    # whose proto is IPPROTO_TCP; with proto 0 the server's split writes hit
    # Nagle + delayed ACK and every keep-alive response stalls ~40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    for _ in range(500):
        if srv.started:
            break
        await asyncio.sleep(0.01)
    assert srv.started
    srv.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield srv
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def _no_open_connections(srv, within=2.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not srv.server_state.connections:
            return True
        await asyncio.sleep(0.02)
    return False


def _consistent(r: LoadResult) -> None:
    assert sum(r.status_counts.values()) == r.requests
    if r.requests:
        assert 0 <= r.p50_ms <= r.p90_ms <= r.p99_ms <= r.max_ms
        assert r.achieved_rps == pytest.approx(r.requests / r.duration_s)
    assert len(r.latencies_ms) == r.requests and list(r.latencies_ms) == sorted(r.latencies_ms)
    if r.requests:
        assert r.latencies_ms[-1] == pytest.approx(r.max_ms, abs=0.001)
    line = r.summary()
    assert r.mode in line and str(r.requests) in line and "p99" in line


async def test_fixed_rate_count_and_warmup(server):
    r = await fixed_rate(server.base + "/?t=fixed", rate=200, connections=4, duration_s=1.0, warmup_s=0.25)
    assert r.mode == "fixed-rate" and r.target_rps == 200 and r.connections == 4
    assert r.errors == 0
    assert r.requests == 200  # exactly rate * duration measured requests
    assert r.status_counts == {200: 200}
    # the measurement phase cannot be shorter than the schedule, nor beat the target
    assert r.duration_s >= 0.99
    assert r.achieved_rps <= 200 * 1.01
    # warm-up requests were sent but not recorded
    assert HITS["/?t=fixed"] == 200 + 50
    _consistent(r)
    assert await _no_open_connections(server)


async def test_status_codes_are_counted_not_errors(server):
    r404 = await closed_loop(server.base + "/404", connections=2, duration_s=0.3, warmup_s=0.05)
    assert r404.errors == 0 and r404.requests > 0
    assert r404.status_counts == {404: r404.requests}
    r500 = await fixed_rate(server.base + "/500", rate=100, connections=2, duration_s=0.3, warmup_s=0)
    assert r500.errors == 0
    assert r500.status_counts == {500: 30}
    _consistent(r404)
    _consistent(r500)


async def test_chunked_bodies_read_fully(server):
    before = HITS["/chunked?"]
    r = await closed_loop(server.base + "/chunked", connections=3, duration_s=0.4, warmup_s=0.05)
    assert r.errors == 0 and r.requests > 0
    assert r.status_counts == {200: r.requests}
    # keep-alive connections survived: every request the server saw got parsed
    assert HITS["/chunked?"] - before >= r.requests
    r2 = await fixed_rate(server.base + "/chunked", rate=100, connections=2, duration_s=0.3, warmup_s=0)
    assert r2.errors == 0 and r2.status_counts == {200: 30}


async def test_closed_loop_completes(server):
    t = time.monotonic()
    r = await closed_loop(server.base + "/?t=closed", connections=8, duration_s=0.5, warmup_s=0.1)
    assert time.monotonic() - t < 10  # bounded (generous: not a speed check)
    assert r.mode == "closed-loop" and r.target_rps is None and r.connections == 8
    assert r.duration_s == pytest.approx(0.5)
    assert r.errors == 0 and r.requests > 0
    assert HITS["/?t=closed"] >= r.requests
    _consistent(r)
    assert await _no_open_connections(server)


async def test_reconnects_when_server_closes(server):
    r = await closed_loop(server.base + "/close", connections=2, duration_s=0.4, warmup_s=0)
    assert r.errors == 0 and r.requests > 2
    r2 = await fixed_rate(server.base + "/close", rate=50, connections=2, duration_s=0.4, warmup_s=0)
    assert r2.errors == 0 and r2.requests == 20


async def test_post_body_and_headers(server):
    BODIES.clear()
    body = b"b" * 1500
    r = await fixed_rate(
        server.base + "/echo",
        rate=50,
        connections=2,
        duration_s=0.2,
        warmup_s=0,
        method="POST",
        headers={"X-Test": "yes"},
        body=body,
    )
    assert r.errors == 0 and r.status_counts == {201: 10}
    assert len(BODIES) == 10 and all(b == (body, b"yes") for b in BODIES)


async def test_head_requests(server):
    r = await closed_loop(server.base + "/chunked", connections=2, duration_s=0.3, warmup_s=0, method="HEAD")
    assert r.errors == 0 and r.requests > 0 and r.status_counts == {200: r.requests}


async def test_timeouts_are_errors_and_bounded(server):
    t = time.monotonic()
    r = await fixed_rate(server.base + "/slow", rate=20, connections=2, duration_s=0.5, warmup_s=0, timeout_s=0.2)
    assert time.monotonic() - t < 0.5 + 0.2 + 5  # bounded by duration + timeout
    assert r.requests == 0 and r.errors == 10
    assert math.isnan(r.p50_ms)
    t = time.monotonic()
    r = await closed_loop(server.base + "/slow", connections=2, duration_s=0.5, warmup_s=0, timeout_s=0.2)
    assert time.monotonic() - t < 0.5 + 5
    assert r.requests == 0 and r.errors >= 2


async def test_connection_refused_raises():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ConnectionError):
        await closed_loop(f"http://127.0.0.1:{port}/", connections=2, duration_s=0.2, timeout_s=0.5)


def test_bad_arguments():
    with pytest.raises(ValueError):
        asyncio.run(closed_loop("https://127.0.0.1/", connections=1, duration_s=0.1))
    with pytest.raises(TypeError):
        run_in_subprocess("closed_loop", url="http://127.0.0.1:1/", connections=1, duration_s=1, rate=5)
    with pytest.raises(ValueError):
        run_in_subprocess("bogus", url="http://127.0.0.1:1/", connections=1, duration_s=1)


def test_percentiles_and_roundtrip():
    xs = sorted(i / 1000 for i in range(1, 101))  # 1..100 ms
    assert _percentile_ms(xs, 50) == pytest.approx(50)
    assert _percentile_ms(xs, 99) == pytest.approx(99)
    assert _percentile_ms(xs, 100) == pytest.approx(100)
    assert math.isnan(_percentile_ms([], 50))
    r = LoadResult("closed-loop", 4, None, 1.0, 10, 1, {200: 9, 404: 1}, 10.0, 1.0, 2.0, 3.0, 4.0, 0.001)
    assert LoadResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def _run(latencies_ms: list[float], status: int = 200) -> LoadResult:
    xs = sorted(latencies_ms)
    return LoadResult(
        "fixed-rate",
        4,
        100.0,
        1.0,
        len(xs),
        0,
        {status: len(xs)},
        len(xs) / 1.0,
        _percentile_ms([x / 1000 for x in xs], 50),
        _percentile_ms([x / 1000 for x in xs], 90),
        _percentile_ms([x / 1000 for x in xs], 99),
        xs[-1],
        0.002,
        tuple(xs),
    )


def test_pooled_runs_give_the_percentiles_of_all_their_requests():
    calm = _run([1.0] * 99 + [2.0])
    stalled = _run([1.0] * 90 + [50.0] * 10, status=503)
    pooled = LoadResult.pooled([calm, stalled, calm])
    assert pooled.requests == 300 and pooled.duration_s == 3.0 and pooled.achieved_rps == 100.0
    assert pooled.status_counts == {200: 200, 503: 100}
    assert pooled.p50_ms == pytest.approx(1.0) and pooled.max_ms == pytest.approx(50.0)
    # 10 of 300 requests stalled (3 %): the pooled p99 shows them; among 1,100 (0.9 %) it does not.
    assert stalled.p99_ms == pytest.approx(50.0) and pooled.p99_ms == pytest.approx(50.0)
    assert LoadResult.pooled([calm, calm, calm, stalled, calm, calm, calm, calm, calm, calm, calm]).p99_ms == 2.0
    assert LoadResult.from_dict(json.loads(json.dumps(pooled.to_dict()))).latencies_ms == pooled.latencies_ms
    with pytest.raises(ValueError):
        LoadResult.pooled([dataclasses.replace(calm, latencies_ms=())])


async def test_cli_json(server):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.loadgen",
        "--url",
        server.base + "/?t=cli",
        "--rate",
        "100",
        "--connections",
        "2",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "--header",
        "X-A: b",
        "--json",
        cwd=str(ROOT),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    d = json.loads(out.decode().strip().splitlines()[-1])
    assert d["mode"] == "fixed-rate" and d["requests"] == 50 and d["errors"] == 0
    assert d["status_counts"] == {"200": 50}
    assert HITS["/?t=cli"] == 60


async def test_run_in_subprocess(server):
    BODIES.clear()
    r = await asyncio.to_thread(
        run_in_subprocess,
        "closed_loop",
        url=server.base + "/echo",
        connections=2,
        duration_s=0.3,
        warmup_s=0.05,
        method="POST",
        body=b"abc",
        headers={"X-Test": "sub"},
    )
    assert isinstance(r, LoadResult) and r.mode == "closed-loop"
    assert r.errors == 0 and r.requests > 0 and r.status_counts == {201: r.requests}
    assert BODIES and all(b == (b"abc", b"sub") for b in BODIES)
