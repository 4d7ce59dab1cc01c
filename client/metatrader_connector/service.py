"""metatrader-connector (9001): the MT5 terminal (real, bridged or simulated) over HTTP."""

from __future__ import annotations

from client.metatrader_connector.routes import router
from client.metatrader_connector.settings import ConnectorSettings
from client.metatrader_connector.state import Terminal
from client.metatrader_connector.terminal import open_terminal
from shared.kit.contract import Contract
from shared.kit.service import Runtime, ServiceDefinition


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
    return term


SERVICE = ServiceDefinition(
    "metatrader-connector",
    settings=ConnectorSettings,
    contract=Contract(),
    routers=(router,),
    start=start,
)
