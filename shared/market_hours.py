"""When markets trade: the one trading calendar of the platform, by session and by symbol.

Three sessions, by UTC weekday and hour:

* ``fx``: Sunday 22:00 to Friday 22:00 UTC;
* ``metal``: as ``fx``, with a daily pause 21:00-22:00 UTC (gold's Friday close is 21:00);
* ``crypto``: never closes.

The simulated MT5 terminal generates ticks only while its symbols' sessions are open, and
pattern-validator does not count closed hours as missing bars: both read this module
(``client/metatrader_connector/terminal/symbols.py``, ``services/pattern_validator/checks.py``).
Times are the bars' or ticks' own (event time); nothing here reads the wall clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

HOURS = 24
# Python weekday numbers (Monday=0 ... Sunday=6), as datetime.weekday() uses.
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)

SESSIONS = ("fx", "metal", "crypto")

#: The calendar of each symbol the platform knows by default (the simulated terminal's symbols).
DEFAULT_SESSIONS: Mapping[str, str] = {"EURUSD": "fx", "GBPUSD": "fx", "XAUUSD": "metal", "BTCUSD": "crypto"}


def open_hours(session: str) -> npt.NDArray[np.bool_]:
    """Boolean table [weekday, utc_hour]: is the market of ``session`` open in that hour?"""
    table = np.zeros((7, HOURS), dtype=bool)
    if session == "crypto":
        table[:] = True
        return table
    table[MON:FRI] = True  # Monday..Thursday, all day
    table[FRI, :22] = True
    table[SUN, 22:] = True
    if session == "metal":
        table[:, 21] = False
    elif session != "fx":
        raise ValueError(f"unknown session calendar {session!r}; known: {list(SESSIONS)}")
    return table


_TABLES = {session: open_hours(session) for session in SESSIONS}


class MarketHours:
    """Which symbol trades when: ``DEFAULT_SESSIONS`` plus ``sessions`` (symbol -> session);
    a symbol known to neither follows ``default``."""

    def __init__(self, sessions: Mapping[str, str] | None = None, default: str = "fx") -> None:
        self._sessions = {**DEFAULT_SESSIONS, **(sessions or {})}
        self._default = default
        unknown = ({*self._sessions.values(), default}) - set(SESSIONS)
        if unknown:
            raise ValueError(f"unknown session calendars {sorted(unknown)}; known: {list(SESSIONS)}")

    def session(self, symbol: str) -> str:
        return self._sessions.get(symbol, self._default)

    def is_open(self, symbol: str, t_ns: int) -> bool:
        """Whether ``symbol`` trades at ``t_ns`` (UTC ns since the epoch), by the hour."""
        at = dt.datetime.fromtimestamp(t_ns / 1e9, dt.UTC)
        return bool(_TABLES[self.session(symbol)][at.weekday(), at.hour])


__all__ = ["DEFAULT_SESSIONS", "SESSIONS", "MarketHours", "open_hours"]
