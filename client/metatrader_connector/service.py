"""metatrader-connector (9001): the MT5 terminal (real, bridged or simulated) over HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from client.metatrader_connector.routes import router
from client.metatrader_connector.settings import ConnectorSettings
from client.metatrader_connector.state import Terminal
from client.metatrader_connector.terminal import open_terminal
from client.metatrader_connector.venue_link import VenueExecutor, VenueLink
from client.server_client import ServerClient, server_client
from shared.kit.contract import Contract
from shared.kit.deps import HttpClient
from shared.kit.service import Runtime, ServiceDefinition

#: The venue link's entry in the bootstrap's ``var/credentials.json``.
CREDENTIALS_ENTRY = "metatrader-connector"


async def start(rt: Runtime[ConnectorSettings, Terminal]) -> Terminal:
    settings = rt.settings
    term = Terminal(
        open_terminal(
            mode=settings.mode,
            mt5linux_host=settings.mt5linux_host,
            mt5linux_port=settings.mt5linux_port,
            seed=settings.seed,
            symbols=settings.symbols,
            csv_dir=settings.csv_dir,
            deposit=settings.sim_deposit,
            trade_state=_trade_state_file(rt) if settings.sim_keep_trades else None,
            # The simulated terminal's "now" (a test's fixed Wednesday); a real one has its server's.
            **({"clock": rt.overrides.wall_clock} if rt.overrides.wall_clock else {}),
        )
    )
    if not await term.call("initialize"):
        code, message = await term.call("last_error")
        term.close()
        raise RuntimeError(f"MT5 initialize failed: {code} {message}")

    async def shut_down() -> None:
        await term.call("shutdown")
        term.close()

    rt.on_stop(shut_down)
    for symbol in settings.symbols:
        await term.call("symbol_select", symbol, True)

    async def terminal_ready() -> str | None:
        info = await term.call("terminal_info")
        return None if info is not None and getattr(info, "connected", True) else "terminal not connected"

    rt.add_check("terminal", terminal_ready)
    # The server the venue link talks to (made always: the contract says the connector may call it).
    server = server_client(rt, settings, entry=CREDENTIALS_ENTRY)
    if settings.venue_account:
        _start_venue_link(rt, term, server, settings.venue_account)
    return term


def _trade_state_file(rt: Runtime[ConnectorSettings, Terminal]) -> Path:
    folder = rt.platform.hats_var_dir / "metatrader-connector"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "trade-state.json"


def _start_venue_link(
    rt: Runtime[ConnectorSettings, Terminal], term: Terminal, server: ServerClient, account: str
) -> None:
    """The MT5 venue's client side: this terminal executes the orders of the platform's ``account``."""
    settings = rt.settings
    wall_clock = rt.overrides.wall_clock or time.time
    link = VenueLink(
        VenueExecutor(term.mt5, term.call, account, wall_clock=wall_clock),
        server,
        snapshot_interval_s=settings.snapshot_interval_s,
    )

    async def link_ready() -> str | None:
        return server.auth_problem or link.problem

    rt.add_check("venue-link", link_ready)
    rt.background("venue-link", link.run)


def _http_options(_: ConnectorSettings) -> dict[str, Any]:
    # Long polls wait up to shared.mt5_link.MAX_WAIT_S (8 s) for commands.
    return {"timeout": httpx.Timeout(15.0, connect=2.0)}


SERVICE = ServiceDefinition(
    "metatrader-connector",
    settings=ConnectorSettings,
    contract=Contract(calls=("api-gateway",)),
    uses=(HttpClient(options=_http_options),),
    routers=(router,),
    start=start,
)
