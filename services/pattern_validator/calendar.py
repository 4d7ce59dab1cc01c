"""When a symbol's market is closed, so that closed hours are never counted as missing bars.

The sessions are the simulated terminal's (``open_hours``: FX and metals trade Sunday 22:00 to
Friday 22:00 UTC, metals pause 21:00-22:00 daily, crypto never closes): one definition of the
trading calendar for the whole platform. Times are the bars' own (event time), never the wall clock.
"""

from __future__ import annotations

import datetime as dt

from client.metatrader_connector.terminal.symbols import DEFAULT_SPECS, open_hours

_TABLES = {session: open_hours(session) for session in ("fx", "metal", "crypto")}


class TradingCalendar:
    def __init__(self, sessions: dict[str, str] | None = None) -> None:
        self._sessions = {name: spec.session for name, spec in DEFAULT_SPECS.items()}
        self._sessions.update(sessions or {})
        unknown = set(self._sessions.values()) - set(_TABLES)
        if unknown:
            raise ValueError(f"unknown session calendars {sorted(unknown)}; known: {sorted(_TABLES)}")

    def session(self, symbol: str) -> str:
        return self._sessions.get(symbol, "fx")

    def is_open(self, symbol: str, t_ns: int) -> bool:
        """Whether ``symbol`` trades at ``t_ns`` (UTC ns), by the hour."""
        at = dt.datetime.fromtimestamp(t_ns / 1e9, dt.UTC)
        return bool(_TABLES[self.session(symbol)][at.weekday(), at.hour])
