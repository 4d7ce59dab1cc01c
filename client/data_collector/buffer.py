"""The collector's disk buffer: SQLite in WAL mode, so a crash or a server outage loses nothing.

Every tick is written here before anything else happens to it. The forwarder
reads undelivered ticks in insertion order and marks them delivered only after
the server acknowledged them, so delivery is in order and at-least-once; the
server's deterministic tick ids make the "at least" harmless. Delivered ticks
stay for a while as the memory that drops duplicates from overlapping sources.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ticks (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key TEXT NOT NULL UNIQUE,
    symbol     TEXT NOT NULL,
    time_msc   INTEGER NOT NULL,
    payload    BLOB NOT NULL,
    delivered  INTEGER NOT NULL DEFAULT 0,
    added_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ticks_pending ON ticks (delivered, seq);
CREATE TABLE IF NOT EXISTS cursors (source TEXT PRIMARY KEY, position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS gaps (
    symbol TEXT NOT NULL, from_msc INTEGER NOT NULL, to_msc INTEGER NOT NULL, detected_at REAL NOT NULL,
    PRIMARY KEY (symbol, from_msc)
);
CREATE TABLE IF NOT EXISTS last_tick (symbol TEXT PRIMARY KEY, time_msc INTEGER NOT NULL);
"""


def dedupe_key(tick: dict) -> str:
    """The identity of a tick across sources: the same fields the server derives its id from."""
    return (
        f"{tick['symbol']}|{tick['time_msc']}|{tick['bid']}|{tick['ask']}|{tick.get('last')}|"
        f"{tick.get('volume', '0')}|{tick.get('flags', 0)}"
    )


@dataclass(frozen=True)
class Pending:
    seqs: list[int]
    ticks: list[dict]


class TickBuffer:
    def __init__(self, path: Path, *, gap_threshold_ms: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a tick acknowledged to its source is on disk even if the machine loses power.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._gap_ms = gap_threshold_ms

    def add(self, ticks: Iterable[dict]) -> int:
        """Buffer ticks (duplicates of anything still remembered are dropped); returns how many were new."""
        now = time.time()
        added = 0
        with self._transaction():
            for tick in sorted(ticks, key=lambda t: (t["symbol"], t["time_msc"])):
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO ticks (dedupe_key, symbol, time_msc, payload, added_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (dedupe_key(tick), tick["symbol"], tick["time_msc"], orjson.dumps(tick), now),
                )
                if cur.rowcount:
                    added += 1
                    self._track_gap(tick["symbol"], tick["time_msc"], now)
        return added

    def _track_gap(self, symbol: str, time_msc: int, now: float) -> None:
        row = self._db.execute("SELECT time_msc FROM last_tick WHERE symbol = ?", (symbol,)).fetchone()
        if row is not None and time_msc - row[0] > self._gap_ms:
            self._db.execute("INSERT OR IGNORE INTO gaps VALUES (?, ?, ?, ?)", (symbol, row[0], time_msc, now))
        if row is None or time_msc > row[0]:
            self._db.execute("INSERT OR REPLACE INTO last_tick VALUES (?, ?)", (symbol, time_msc))

    def pending(self, limit: int) -> Pending:
        rows = self._db.execute(
            "SELECT seq, payload FROM ticks WHERE delivered = 0 ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return Pending([r[0] for r in rows], [orjson.loads(r[1]) for r in rows])

    def mark_delivered(self, seqs: list[int]) -> None:
        if seqs:
            with self._transaction():
                self._db.executemany("UPDATE ticks SET delivered = 1 WHERE seq = ?", [(s,) for s in seqs])

    def purge_delivered(self, older_than_s: float) -> int:
        cur = self._db.execute("DELETE FROM ticks WHERE delivered = 1 AND added_at < ?", (time.time() - older_than_s,))
        return cur.rowcount

    def depth(self) -> int:
        return self._db.execute("SELECT count(*) FROM ticks WHERE delivered = 0").fetchone()[0]

    def cursor(self, source: str) -> int | None:
        row = self._db.execute("SELECT position FROM cursors WHERE source = ?", (source,)).fetchone()
        return None if row is None else row[0]

    def set_cursor(self, source: str, position: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?)", (source, position))

    def add_with_cursor(self, ticks: list[dict], source: str, position: int) -> int:
        """Buffer ticks and advance a source's cursor atomically (a crash never skips or repeats a poll)."""
        with self._transaction():
            added = self.add(ticks)
            self.set_cursor(source, position)
        return added

    def gaps(self, limit: int = 100) -> list[dict]:
        rows = self._db.execute(
            "SELECT symbol, from_msc, to_msc FROM gaps ORDER BY detected_at DESC LIMIT ?", (limit,)
        ).fetchall()
        return [{"symbol": s, "from_msc": a, "to_msc": b, "seconds": (b - a) / 1000} for s, a, b in rows]

    def _transaction(self):
        return _Tx(self._db)

    def close(self) -> None:
        self._db.close()


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, re-entrant (nested use joins the outer transaction)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._outer = False

    def __enter__(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
            self._outer = True

    def __exit__(self, exc_type, *_: object) -> None:
        if self._outer:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
