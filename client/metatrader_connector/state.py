"""The connector's state while it runs: the terminal and the one thread it is used from.

The ``MetaTrader5`` API is blocking (and remote, through mt5linux), so every call
runs on one worker thread: the terminal is used by one caller at a time, as MT5 expects.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from shared.kit.problems import Problem
from shared.kit.service import state_of


class Terminal:
    """The terminal plus its worker thread."""

    def __init__(self, mt5: Any) -> None:
        self.mt5 = mt5
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mt5")
        self.digits: dict[str, int] = {}

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        fn = functools.partial(getattr(self.mt5, name), *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def fail(self, what: str) -> Problem:
        code, message = await self.call("last_error")
        return Problem(
            502 if code in (-10004, -10005) else 404 if code == -4 else 400, f"{what}: MT5 error {code} ({message})"
        )

    def close(self) -> None:
        self._executor.shutdown(wait=False)


#: ``term: TerminalDep`` in a route's parameters gives the running terminal.
TerminalDep = Annotated[Terminal, state_of(Terminal)]
