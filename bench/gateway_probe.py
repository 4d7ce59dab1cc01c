"""What the api-gateway's ``/api/v1`` proxy costs: the same GET, direct and through the gateway.

Starts, each in its own process under uvicorn (uvloop + httptools, as ``hats serve`` runs
services):

* an upstream built with ``build_app("database-service")`` (metrics, native OTel spans)
  whose ``GET /api/v1/market/bars`` verifies the bearer token (``require(market:read)``,
  as every service does) and answers a pre-rendered ~12 KB JSON array of 100 bars;
* the gateway: ``build_app("api-gateway")`` with ``install_proxy`` and
  ``install_security`` (``--bare``: the ``GatewayProxy`` ASGI app alone), verifying
  tokens and rate-limiting per client.

Then, from a separate load-generator process (``bench.loadgen``), 64 connections: a
fixed 1,500 requests/s (open loop, coordinated-omission corrected) and the
closed-loop maximum, direct and proxied. Also reports the server processes' CPU
per request.

    python -m bench.gateway_probe [--rate 1500] [--duration 10] [--bare] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import psutil

from bench.loadgen import LoadResult, run_in_subprocess

ISSUER = "http://127.0.0.1:8000"
AUDIENCE = "hats-api"
BARS_PATH = "/api/v1/market/bars?symbol=EURUSD&timeframe=M1&limit=100"


# --------------------------------------------------------------------------- the servers


def _keyset(key_file: Path):
    from joserfc.jwk import KeySet, OKPKey

    key = OKPKey.import_key(json.loads(key_file.read_text()))
    return KeySet([OKPKey.import_key(key.as_dict(private=False))])


def _verifier(key_file: Path):
    from shared.auth import LocalKeySource, TokenVerifier

    keyset = _keyset(key_file)
    return TokenVerifier(ISSUER, AUDIENCE, LocalKeySource(lambda: keyset))


def _bars_body() -> bytes:
    """85 M1 bars rendered the way database-service renders them (~12 KB)."""
    start = 1_767_225_600
    return (
        b"["
        + b",".join(
            orjson.dumps(
                {
                    "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + i * 60)),
                    "open": 1.08123 + i * 1e-5,
                    "high": 1.08201 + i * 1e-5,
                    "low": 1.08088 + i * 1e-5,
                    "close": 1.08154 + i * 1e-5,
                    "volume": 1200 + i,
                    "real_volume": 1234567.5 + i,
                }
            )
            for i in range(85)
        )
        + b"]"
    )


def upstream_app(key_file: Path, var: Path):
    from fastapi import APIRouter
    from fastapi.responses import Response

    from shared.auth.fastapi import install_auth, require
    from shared.auth.scopes import MARKET_READ
    from shared.kit.app import build_app
    from shared.settings import PlatformSettings

    body = _bars_body()
    router = APIRouter(prefix="/api/v1/market")

    @router.get("/bars", dependencies=[require(MARKET_READ)])
    async def bars() -> Response:
        return Response(body, media_type="application/json")

    app = build_app("database-service", routers=[router], settings=PlatformSettings(hats_var_dir=var))
    install_auth(app, _verifier(key_file))
    return app


def gateway_app(key_file: Path, var: Path, upstream: str, bare: bool):
    from services.api_gateway.proxy import GatewayProxy, ProxySettings, install_proxy
    from services.api_gateway.security import install_security
    from shared.kit.app import build_app
    from shared.ratelimit import Limit, SlidingWindowLimiter
    from shared.settings import PlatformSettings

    # A limit far above the load: its bookkeeping is measured, never a refusal.
    limiter = SlidingWindowLimiter({"default": Limit(1_000_000, 60.0)})
    proxy = GatewayProxy({"market": upstream}, _verifier(key_file), limiter, ProxySettings())
    if bare:
        return proxy

    @contextlib.asynccontextmanager
    async def lifespan(_kit):
        async with proxy:
            yield

    app = build_app("api-gateway", lifespan=lifespan, settings=PlatformSettings(hats_var_dir=var))
    install_proxy(app, proxy)
    install_security(app)
    return app


def serve(role: str, port: int, key_file: Path, var: Path, upstream: str | None, bare: bool) -> None:
    import uvicorn

    from shared.kit.http_protocol import CoalescingHttpToolsProtocol

    app = upstream_app(key_file, var) if role == "upstream" else gateway_app(key_file, var, upstream or "", bare)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        loop="uvloop",
        http=CoalescingHttpToolsProtocol,  # as shared.kit.runner serves every service
        log_config=None,
        log_level="warning",
        access_log=False,
        server_header=False,
    )


# --------------------------------------------------------------------------- the driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(args: list[str], log: Path) -> Iterator[subprocess.Popen]:
    out = log.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.gateway_probe", *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HATS_LOG_LEVEL": "WARNING"},
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


def _wait_ok(url: str, headers: dict[str, str], proc: subprocess.Popen, log: Path) -> bytes:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(url, headers=headers, timeout=2.0)
            if response.status_code == 200:
                return response.content
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready in 60 s: {log.read_text()[-2000:]}")


def _cpu(proc: subprocess.Popen) -> float:
    times = psutil.Process(proc.pid).cpu_times()
    return times.user + times.system


def _measure(
    kind: str, url: str, headers: dict[str, str], servers: dict[str, subprocess.Popen], **load: float
) -> tuple[LoadResult, dict[str, float]]:
    """One load run; returns it and each server's CPU microseconds per request."""
    before = {name: _cpu(proc) for name, proc in servers.items()}
    result = run_in_subprocess(kind, url=url, headers=headers, **load)
    # The servers also served the warm-up requests: count them so the per-request figure is fair.
    served = max(1.0, result.requests + load.get("warmup_s", 1.0) * result.achieved_rps)
    return result, {name: (_cpu(proc) - before[name]) / served * 1e6 for name, proc in servers.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gateway_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=1500.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--bare", action="store_true", help="the GatewayProxy ASGI app alone, without the FastAPI stack")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument("--role", choices=("upstream", "gateway"), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--var", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--upstream", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.role:
        serve(a.role, a.port, a.key, a.var, a.upstream, a.bare)
        return 0

    from joserfc.jwk import OKPKey

    from shared.auth import mint_access_token
    from shared.auth.scopes import MARKET_READ

    var = Path(tempfile.mkdtemp(prefix="hats-gwprobe-"))
    try:
        key = OKPKey.generate_key("Ed25519", parameters={"kid": "probe"})
        key_file = var / "key.json"
        key_file.write_text(json.dumps(key.as_dict(private=True)))
        key_file.chmod(0o600)
        token, _ = mint_access_token(
            key,
            issuer=ISSUER,
            audience=AUDIENCE,
            subject="client:probe",
            client_id="probe",
            tenant="platform",
            scopes=[MARKET_READ],
            ttl_s=3600,
        )
        headers = {"Authorization": f"Bearer {token}"}
        up_port, gw_port = _free_port(), _free_port()
        direct, proxied = f"http://127.0.0.1:{up_port}{BARS_PATH}", f"http://127.0.0.1:{gw_port}{BARS_PATH}"
        common = ["--key", str(key_file), "--var", str(var)]
        with (
            _server(["--role", "upstream", "--port", str(up_port), *common], var / "upstream.log") as up,
            _server(
                [
                    "--role",
                    "gateway",
                    "--port",
                    str(gw_port),
                    "--upstream",
                    f"http://127.0.0.1:{up_port}",
                    *common,
                    *(["--bare"] if a.bare else []),
                ],
                var / "gateway.log",
            ) as gw,
        ):
            body = _wait_ok(direct, headers, up, var / "upstream.log")
            if _wait_ok(proxied, headers, gw, var / "gateway.log") != body:
                raise SystemExit("the proxied body differs from the direct one")
            load = {"connections": a.connections, "duration_s": a.duration, "warmup_s": a.warmup}
            servers = {"upstream": up, "gateway": gw}
            runs = {}
            # Fixed-rate runs first: a closed-loop run saturates the machine and leaves the span
            # exporters a backlog. A pause lets each run start from a quiet machine.
            for mode, extra in (("fixed", {"rate": a.rate}), ("closed", {})):
                for name, url in (("direct", direct), ("proxied", proxied)):
                    time.sleep(2.0)
                    kind = "fixed_rate" if mode == "fixed" else "closed_loop"
                    runs[f"{name} {mode}"] = _measure(kind, url, headers, servers, **extra, **load)
        report(runs, a, len(body))
    finally:
        shutil.rmtree(var, ignore_errors=True)
    return 0


def report(runs: dict[str, tuple[LoadResult, dict[str, float]]], a: argparse.Namespace, body_bytes: int) -> None:
    figures = {
        name: {
            "rps": round(r.achieved_rps),
            "p50_ms": round(r.p50_ms, 2),
            "p90_ms": round(r.p90_ms, 2),
            "p99_ms": round(r.p99_ms, 2),
            "max_ms": round(r.max_ms, 2),
            "errors": r.errors,
            "non_200": sum(n for s, n in r.status_counts.items() if s != 200),
            "upstream_cpu_us_per_req": round(cpu["upstream"]),
            "gateway_cpu_us_per_req": round(cpu["gateway"]),
        }
        for name, (r, cpu) in runs.items()
    }
    d, x = runs["direct fixed"][0], runs["proxied fixed"][0]
    overhead = {"p50_ms": round(x.p50_ms - d.p50_ms, 2), "p99_ms": round(x.p99_ms - d.p99_ms, 2)}
    if a.json:
        print(
            json.dumps(
                {
                    "runs": figures,
                    "overhead_at_fixed_rate": overhead,
                    "rate": a.rate,
                    "connections": a.connections,
                    "duration_s": a.duration,
                    "bare": a.bare,
                    "body_bytes": body_bytes,
                    "cpus": os.cpu_count(),
                }
            )
        )
        return
    stack = "bare GatewayProxy" if a.bare else "build_app + install_proxy + install_security"
    print(
        f"gateway probe: {body_bytes} B body, {a.connections} connections, {a.duration:g} s per run, "
        f"gateway = {stack}, {os.cpu_count()} CPUs shared by upstream, gateway and load generator"
    )
    print(
        f"{'run':<16}{'rps':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}"
        f"{'upstream CPU':>14}{'gateway CPU':>13}  (us/request)"
    )
    for name, f in figures.items():
        print(
            f"{name:<16}{f['rps']:>8}{f['p50_ms']:>9}{f['p90_ms']:>9}{f['p99_ms']:>9}{f['max_ms']:>9}"
            f"{f['errors'] + f['non_200']:>8}{f['upstream_cpu_us_per_req']:>14}{f['gateway_cpu_us_per_req']:>13}"
        )
    print(f"gateway overhead at {a.rate:g} rps: p50 +{overhead['p50_ms']} ms, p99 +{overhead['p99_ms']} ms")


if __name__ == "__main__":
    sys.exit(main())
