"""Access to a MetaTrader 5 terminal through the ``MetaTrader5`` module API.

``open_terminal()`` picks the implementation: the real ``MetaTrader5``
package (Windows only), the ``mt5linux`` RPyC bridge to a terminal running
under Wine, or :class:`SimulatedTerminal`, an in-process terminal over
deterministic generated (or replayed CSV) data.  All three expose the same
functions and constants, so the caller never needs to know which it got::

    mt5 = open_terminal()
    mt5.initialize()
    rates = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 100)
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from .simulator import DEPOSIT, SimulatedTerminal

__all__ = ["SimulatedTerminal", "csv_sources_in", "open_terminal"]

Mode = Literal["auto", "metatrader5", "mt5linux", "simulated"]


def open_terminal(
    *,
    mode: Mode = "auto",
    mt5linux_host: str | None = None,
    mt5linux_port: int = 18812,
    seed: int = 20240101,
    symbols: Sequence[str] | None = None,
    csv_dir: Path | None = None,
    clock: Callable[[], float] = time.time,
    deposit: float = DEPOSIT,
    trade_state: Path | None = None,
) -> Any:
    """Return a module-like object with the ``MetaTrader5`` API (not yet initialised).

    ``mode="auto"`` takes the real ``MetaTrader5`` module when it can be
    imported, else an ``mt5linux`` bridge when ``mt5linux_host`` is given,
    else the simulator.  The other modes insist on one implementation and
    raise ``ImportError`` if its package is missing.  ``seed``, ``symbols``,
    ``csv_dir`` (``<SYMBOL>.csv`` MT5 exports replayed for those symbols) and
    ``clock`` configure the simulator only.
    """
    if mode == "auto":
        real = _import_optional("MetaTrader5")
        if real is not None:
            return real
        mode = "mt5linux" if mt5linux_host else "simulated"
    if mode == "metatrader5":
        real = _import_optional("MetaTrader5")
        if real is None:
            raise ImportError(
                "mode='metatrader5' needs the MetaTrader5 package, which exists only "
                "for Windows (pip install MetaTrader5); use mode='mt5linux' or 'simulated'"
            )
        return real
    if mode == "mt5linux":
        bridge = _import_optional("mt5linux")
        if bridge is None:
            raise ImportError(
                "mode='mt5linux' needs the mt5linux package (pip install mt5linux, "
                "or the project's 'mt5' extra) and an mt5linux server next to the terminal"
            )
        # mt5linux's own default host; connecting happens in its constructor.
        return bridge.MetaTrader5(host=mt5linux_host or "localhost", port=mt5linux_port)
    if mode == "simulated":
        return SimulatedTerminal(
            seed=seed,
            symbols=symbols,
            clock=clock,
            csv_sources=csv_sources_in(csv_dir) if csv_dir is not None else None,
            trade_state=trade_state,
            deposit=deposit,
        )
    raise ValueError(f"unknown terminal mode {mode!r}")


def csv_sources_in(directory: Path) -> dict[str, Path]:
    """``{SYMBOL: path}`` for every ``<SYMBOL>.csv`` export in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"CSV directory {directory} does not exist")
    return {path.stem: path for path in sorted(directory.glob("*.csv"))}


def _import_optional(name: str) -> Any:
    """The module ``name``, or None when it is not installed (ImportError
    raised *inside* an installed package still propagates)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise
