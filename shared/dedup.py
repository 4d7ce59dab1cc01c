"""The seeds' SignalDeduplicator (``bot_ai_v3_system_components.ru.md``).

fingerprint = sha256 of symbol, direction, strategy and the signal's time truncated to the
minute; a fingerprint seen within the window (default 300 s, by the signals' own event time)
is a duplicate. Stats: how many were checked, how many were duplicates, how many are tracked.

Used by pattern-validator (a signal re-emitted after a restart is rejected as a duplicate) and by
trading-engine's bots (a signal redelivered never becomes a second order). The deduplicator holds
fingerprints in memory; whoever needs them across a restart stores them and ``remember``s them
again at start (``seen_items`` lists them).

    dedup = SignalDeduplicator(window_s=300)
    fp = fingerprint("EURUSD", "long", "ensemble-1", signal.ts_event)
    if not dedup.check(fp, signal.ts_event):   # False: first time within the window
        act_on(signal)
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

MINUTE_NS = 60_000_000_000


def fingerprint(symbol: str, direction: str, strategy: str, ts_ns: int) -> str:
    """sha256 (hex) of symbol, direction, strategy and ``ts_ns`` truncated to its minute."""
    minute = ts_ns // MINUTE_NS * MINUTE_NS
    return hashlib.sha256(f"{symbol}|{direction}|{strategy}|{minute}".encode()).hexdigest()


@dataclass
class DedupStats:
    """Counters of a deduplicator: fingerprints checked, duplicates found, fingerprints held now."""

    checked: int = 0
    duplicates: int = 0
    tracked: int = 0


class SignalDeduplicator:
    """Fingerprints seen within the last ``window_s`` seconds of event time (not wall-clock time:
    a replay of old signals is judged by their own times)."""

    def __init__(self, window_s: float) -> None:
        self.window_ns = int(window_s * 1e9)
        #: fingerprint -> event time (ns) it was first seen at, oldest first.
        self._seen: OrderedDict[str, int] = OrderedDict()
        self.stats = DedupStats()

    def check(self, fp: str, ts_ns: int) -> bool:
        """Whether ``fp`` is a duplicate at ``ts_ns``; remembers it if not."""
        if self.seen(fp, ts_ns):
            return True
        self.remember(fp, ts_ns)
        return False

    def seen(self, fp: str, ts_ns: int) -> bool:
        """Whether ``fp`` is a duplicate at ``ts_ns``, without remembering it (``remember`` does,
        once the verdict that carries it is stored)."""
        self._expire(ts_ns)
        self.stats.checked += 1
        if fp in self._seen:  # still within the window: _expire dropped the older ones
            self.stats.duplicates += 1
            return True
        return False

    def remember(self, fp: str, ts_ns: int) -> None:
        """Remember a fingerprint (a stored verdict's, also when restoring them after a restart)."""
        self._seen[fp] = ts_ns
        self._seen.move_to_end(fp)
        self.stats.tracked = len(self._seen)

    def seen_items(self) -> list[tuple[str, int]]:
        """The fingerprints held, with the event time each was first seen at, oldest first."""
        return list(self._seen.items())

    def _expire(self, now_ns: int) -> None:
        while self._seen:
            fp, first = next(iter(self._seen.items()))
            if now_ns - first < self.window_ns:
                break
            del self._seen[fp]
        self.stats.tracked = len(self._seen)
