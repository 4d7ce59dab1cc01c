"""Run one service of the port matrix as this process: ``hats serve <name>``."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

from shared import ports
from shared.kit.http_protocol import CoalescingHttpToolsProtocol
from shared.kit.portguard import PortTaken, bind_or_explain
from shared.kit.service import load_definition
from shared.settings import PlatformSettings

#: Exit code of a service that refused to start because its port is taken.
EXIT_PORT_TAKEN = 3
#: Seconds uvicorn waits for open requests on SIGTERM before closing; the lifespan
#: then drains consumers and commits offsets, all within the 10 s budget.
GRACEFUL_HTTP_S = 4


def server_config(app: Any, settings: PlatformSettings, **overrides: Any) -> uvicorn.Config:
    """How ``hats serve`` runs a service's app under uvicorn (``overrides``: for tests, e.g. the loop)."""
    trusted = list(settings.hats_trusted_proxies)
    options: dict[str, Any] = {
        "lifespan": "on",
        "loop": "uvloop",
        # httptools, with a response's head and body sent in one write (shared/kit/http_protocol.py)
        "http": CoalescingHttpToolsProtocol,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": GRACEFUL_HTTP_S,
        "server_header": False,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise, and under
        # `hats up` every local caller is 127.0.0.1: anyone could pick the address the
        # per-address limits count. Only configured proxies are believed (none by default).
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
        **overrides,
    }
    return uvicorn.Config(app, **options)


def serve(name: str) -> int:
    try:
        service = ports.service(name)
    except KeyError:
        print(f"unknown service {name!r}; see `hats ports`", file=sys.stderr)
        return 2
    if not service.implemented:
        print(f"{name} is in the port matrix but not implemented yet", file=sys.stderr)
        return 2
    settings = PlatformSettings()
    port = settings.port_of(service.name)
    try:
        sock = bind_or_explain(settings.hats_bind_host, port, service.name)
    except PortTaken as exc:
        print(f"{service.name}: {exc}", file=sys.stderr)
        return EXIT_PORT_TAKEN
    app = load_definition(service).create_app()
    server = uvicorn.Server(server_config(app, settings))
    server.run(sockets=[sock])
    # uvicorn returns normally after SIGTERM; a failed startup leaves started=False.
    return 0 if server.started else 1
