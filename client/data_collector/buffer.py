"""The collector's disk buffer: SQLite in WAL mode, so a crash, a server outage or a lost broker log loses nothing.

Every tick is written here before anything else happens to it, and stays until the
server confirmed that it was handled (stored, and in a durable bar checkpoint). A
tick moves through these states::

    PENDING --sent, 202 with a receipt--> SENT --receipt confirmed by /progress--> CONFIRMED --window--> purged
       ^                                    |
       +--- the broker's log was lost ------+          (receipt of another broker epoch)
    PENDING --refused for good--> QUARANTINED          (kept with its reason, listed, never dropped)

A transient refusal (the clocks differ) puts a tick back to PENDING with a time
before which it is not sent again. Confirmed ticks stay for the dedupe window as
the memory that drops duplicates from overlapping sources.

Threads: SQLite connections must not be shared across threads, so ``TickStore``
(plain, synchronous) is owned by one dedicated thread, and ``TickBuffer`` (what the
rest of the collector uses) runs every call there, one at a time. Each call of the
store is one transaction: nothing else can interleave with it on that thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import orjson

R = TypeVar("R")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ticks (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key   TEXT NOT NULL UNIQUE,
    symbol       TEXT NOT NULL,
    time_msc     INTEGER NOT NULL,
    payload      BLOB NOT NULL,
    state        INTEGER NOT NULL DEFAULT 0,
    receipt      INTEGER,
    not_before   REAL NOT NULL DEFAULT 0,
    attempts     INTEGER NOT NULL DEFAULT 0,
    reason       TEXT,
    detail       TEXT,
    added_at     REAL NOT NULL,
    settled_at   REAL
);
CREATE INDEX IF NOT EXISTS ticks_by_state ON ticks (state, seq);
CREATE INDEX IF NOT EXISTS ticks_by_receipt ON ticks (receipt);
CREATE TABLE IF NOT EXISTS receipts (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    epoch    TEXT NOT NULL,
    offsets  BLOB NOT NULL,
    sent_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (source TEXT PRIMARY KEY, position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS gaps (
    symbol TEXT NOT NULL, from_msc INTEGER NOT NULL, to_msc INTEGER NOT NULL, detected_at REAL NOT NULL,
    PRIMARY KEY (symbol, from_msc)
);
CREATE TABLE IF NOT EXISTS last_tick (symbol TEXT PRIMARY KEY, time_msc INTEGER NOT NULL);
"""

#: ``PRAGMA user_version`` of the schema above. Version 0 with a ``delivered`` column is the
#: buffer of before end-to-end delivery: its ticks are sent again (duplicates are harmless).
_VERSION = 2


class TickState(IntEnum):
    PENDING = 0
    SENT = 1
    CONFIRMED = 2
    QUARANTINED = 3


class BufferFull(Exception):
    """The buffer holds its cap of undelivered ticks: the source keeps its ticks and tries later."""


def dedupe_key(tick: dict[str, Any]) -> str:
    """The identity of a tick across sources: the same fields the server derives its id from."""
    return (
        f"{tick['symbol']}|{tick['time_msc']}|{tick['bid']}|{tick['ask']}|{tick.get('last')}|"
        f"{tick.get('volume', '0')}|{tick.get('flags', 0)}"
    )


@dataclass(frozen=True)
class Batch:
    """Ticks to send, in buffer order: ``seqs[i]`` is the buffer's id of ``ticks[i]``."""

    seqs: list[int]
    ticks: list[dict[str, Any]]


@dataclass(frozen=True)
class Receipt:
    """What the server answered for the accepted ticks of one request (see the delivery protocol)."""

    epoch: str
    #: partition -> highest offset written for the request in that partition
    offsets: dict[int, int]


@dataclass(frozen=True)
class StoredReceipt:
    id: int
    receipt: Receipt


@dataclass(frozen=True)
class Refusal:
    """A tick the server refused: which one, why (a stable code) and the server's words."""

    seq: int
    reason: str
    detail: str


@dataclass(frozen=True)
class Counts:
    pending: int = 0
    sent: int = 0
    confirmed: int = 0
    quarantined: int = 0

    @property
    def unconfirmed(self) -> int:
        """Ticks the server has not confirmed yet (what the size cap bounds)."""
        return self.pending + self.sent


class TickStore:
    """The SQLite buffer itself; use it from one thread only (``TickBuffer`` does)."""

    def __init__(
        self, path: Path, *, gap_threshold_ms: int, max_ticks: int, clock: Callable[[], float] = time.time
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread stays on: SQLite itself refuses any use from a second thread.
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a tick acknowledged to its source is on disk even if the machine loses power.
        self._db.execute("PRAGMA synchronous=FULL")
        with self._transaction():
            self._migrate()
        self._gap_ms = gap_threshold_ms
        self._max_ticks = max_ticks
        self._clock = clock

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(ticks)")}
        if version < _VERSION and "delivered" in columns:
            self._db.execute("ALTER TABLE ticks RENAME TO ticks_v1")
            self._db.execute("DROP INDEX IF EXISTS ticks_pending")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self._db.execute(statement)
        if version < _VERSION and "delivered" in columns:
            # Delivered under the old rule (a 202 only): never confirmed, so sent again.
            self._db.execute(
                "INSERT INTO ticks (seq, dedupe_key, symbol, time_msc, payload, added_at) "
                "SELECT seq, dedupe_key, symbol, time_msc, payload, added_at FROM ticks_v1 ORDER BY seq"
            )
            self._db.execute("DROP TABLE ticks_v1")
        self._db.execute(f"PRAGMA user_version = {_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- sources ---------------------------------------------------------------------------

    def add(self, ticks: Iterable[dict[str, Any]]) -> int:
        """Buffer ticks (duplicates of anything still remembered are dropped); returns how many were new.

        Raises ``BufferFull`` (and buffers none) when the cap of unconfirmed ticks is reached.
        """
        with self._transaction():
            return self._add(ticks)

    def add_with_cursor(self, ticks: list[dict[str, Any]], source: str, position: int) -> int:
        """Buffer ticks and advance a source's cursor atomically (a crash never skips or repeats a poll).

        Raises ``BufferFull`` (and moves no cursor) when the cap is reached.
        """
        with self._transaction():
            added = self._add(ticks)
            self._db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?)", (source, position))
        return added

    def _add(self, ticks: Iterable[dict[str, Any]]) -> int:
        # A soft cap: a batch is taken whole while below it, so a source never splits one poll or file.
        if self._counts().unconfirmed >= self._max_ticks:
            raise BufferFull(f"the buffer holds {self._max_ticks} unconfirmed ticks (its cap)")
        now = self._clock()
        added = 0
        for tick in sorted(ticks, key=lambda t: (t["symbol"], t["time_msc"])):
            cur = self._db.execute(
                "INSERT OR IGNORE INTO ticks (dedupe_key, symbol, time_msc, payload, added_at) VALUES (?, ?, ?, ?, ?)",
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

    def cursor(self, source: str) -> int | None:
        row = self._db.execute("SELECT position FROM cursors WHERE source = ?", (source,)).fetchone()
        return None if row is None else int(row[0])

    def full(self) -> bool:
        return self._counts().unconfirmed >= self._max_ticks

    # -- delivery --------------------------------------------------------------------------

    def pending(self, limit: int) -> Batch:
        """The oldest pending ticks that may be sent now (a transient refusal sets a time before which not)."""
        rows = self._db.execute(
            "SELECT seq, payload FROM ticks WHERE state = 0 AND not_before <= ? ORDER BY seq LIMIT ?",
            (self._clock(), limit),
        ).fetchall()
        return Batch([r[0] for r in rows], [orjson.loads(r[1]) for r in rows])

    def next_retry_at(self) -> float | None:
        """When the earliest pending tick held back by a transient refusal may be sent again."""
        row = self._db.execute("SELECT min(not_before) FROM ticks WHERE state = 0").fetchone()
        return None if row[0] is None else float(row[0])

    def record_outcome(
        self,
        accepted: list[int],
        receipt: Receipt | None,
        retry: list[Refusal],
        retry_at: dict[int, float],
        quarantine: list[Refusal],
    ) -> None:
        """One answer of the server, in one transaction.

        ``accepted`` ticks become SENT under ``receipt`` (required with them); ``retry`` go back to
        PENDING, not before ``retry_at[seq]``; ``quarantine`` are kept aside.
        """
        if accepted and receipt is None:
            raise ValueError("accepted ticks are kept until their receipt is confirmed: a receipt is required")
        now = self._clock()
        with self._transaction():
            if accepted and receipt is not None:
                receipt_id = self._db.execute(
                    "INSERT INTO receipts (epoch, offsets, sent_at) VALUES (?, ?, ?)",
                    (receipt.epoch, orjson.dumps({str(p): o for p, o in receipt.offsets.items()}), now),
                ).lastrowid
                self._db.executemany(
                    "UPDATE ticks SET state = 1, receipt = ? WHERE seq = ?", [(receipt_id, s) for s in accepted]
                )
            self._db.executemany(
                "UPDATE ticks SET state = 0, not_before = ?, attempts = attempts + 1, reason = ?, detail = ? "
                "WHERE seq = ?",
                [(retry_at[r.seq], r.reason, r.detail, r.seq) for r in retry],
            )
            self._db.executemany(
                "UPDATE ticks SET state = 3, reason = ?, detail = ?, settled_at = ? WHERE seq = ?",
                [(r.reason, r.detail, now, r.seq) for r in quarantine],
            )

    def attempts(self, seqs: list[int]) -> dict[int, int]:
        """How often each tick was refused transiently so far (its backoff grows with it)."""
        marks = ",".join("?" * len(seqs))
        return dict(self._db.execute(f"SELECT seq, attempts FROM ticks WHERE seq IN ({marks})", seqs).fetchall())

    # -- confirmation ----------------------------------------------------------------------

    def receipts(self) -> list[StoredReceipt]:
        """Receipts whose ticks are SENT and not confirmed yet, oldest first."""
        rows = self._db.execute("SELECT id, epoch, offsets FROM receipts ORDER BY id").fetchall()
        return [
            StoredReceipt(i, Receipt(epoch, {int(p): int(o) for p, o in orjson.loads(offsets).items()}))
            for i, epoch, offsets in rows
        ]

    def unconfirmed_epoch(self) -> str | None:
        """The epoch of the newest receipt not confirmed yet (None when every sent tick is confirmed)."""
        row = self._db.execute("SELECT epoch FROM receipts ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else str(row[0])

    def lose_other_epochs(self, epoch: str) -> int:
        """Put the ticks of every receipt not of ``epoch`` back to PENDING (their broker log is gone)."""
        lost = [r for (r,) in self._db.execute("SELECT id FROM receipts WHERE epoch != ?", (epoch,)).fetchall()]
        self.settle([], lost)
        return len(lost)

    def settle(self, confirmed: list[int], lost: list[int]) -> None:
        """Confirm the ticks of ``confirmed`` receipts; put those of ``lost`` ones back to PENDING (sent again)."""
        now = self._clock()
        with self._transaction():
            self._db.executemany(
                "UPDATE ticks SET state = 2, receipt = NULL, settled_at = ? WHERE receipt = ?",
                [(now, r) for r in confirmed],
            )
            self._db.executemany(
                "UPDATE ticks SET state = 0, receipt = NULL, not_before = 0 WHERE receipt = ?", [(r,) for r in lost]
            )
            self._db.executemany("DELETE FROM receipts WHERE id = ?", [(r,) for r in [*confirmed, *lost]])

    def purge_confirmed(self, older_than_s: float) -> int:
        """Forget confirmed ticks settled longer ago than the dedupe window."""
        with self._transaction():
            cur = self._db.execute(
                "DELETE FROM ticks WHERE state = 2 AND settled_at < ?", (self._clock() - older_than_s,)
            )
        return cur.rowcount

    # -- what the API shows ----------------------------------------------------------------

    def counts(self) -> Counts:
        return self._counts()

    def _counts(self) -> Counts:
        rows = self._db.execute("SELECT state, count(*) FROM ticks GROUP BY state").fetchall()
        by_state = {TickState(s).name.lower(): n for s, n in rows}
        return Counts(**by_state)

    def quarantined(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT seq, payload, reason, detail, settled_at FROM ticks WHERE state = 3 ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            {"seq": s, "tick": orjson.loads(p), "reason": r, "detail": d, "quarantined_at": t} for s, p, r, d, t in rows
        ]

    def release_quarantine(self) -> int:
        """Send every quarantined tick again (after the cause was fixed, e.g. a symbol added on the server)."""
        with self._transaction():
            cur = self._db.execute("UPDATE ticks SET state = 0, not_before = 0, settled_at = NULL WHERE state = 3")
        return cur.rowcount

    def discard_quarantine(self) -> int:
        """Forget every quarantined tick: an operator's decision, never the collector's."""
        with self._transaction():
            cur = self._db.execute("DELETE FROM ticks WHERE state = 3")
        return cur.rowcount

    def quarantine_reasons(self) -> dict[str, int]:
        rows = self._db.execute("SELECT reason, count(*) FROM ticks WHERE state = 3 GROUP BY reason").fetchall()
        return {str(r): int(n) for r, n in rows}

    def gaps(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT symbol, from_msc, to_msc FROM gaps ORDER BY detected_at DESC LIMIT ?", (limit,)
        ).fetchall()
        return [{"symbol": s, "from_msc": a, "to_msc": b, "seconds": (b - a) / 1000} for s, a, b in rows]

    def close(self) -> None:
        self._db.close()


class TickBuffer:
    """The buffer for asyncio code: every call runs on the one thread that owns the SQLite connection.

    ``await buffer.call(TickStore.method, *args)`` runs ``store.method(*args)`` there; calls
    run one at a time in the order they were made.
    """

    def __init__(self, executor: ThreadPoolExecutor, store: TickStore) -> None:
        self._executor, self._store = executor, store

    @classmethod
    async def open(
        cls, path: Path, *, gap_threshold_ms: int, max_ticks: int, clock: Callable[[], float] = time.time
    ) -> TickBuffer:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collector-buffer")
        factory = partial(TickStore, path, gap_threshold_ms=gap_threshold_ms, max_ticks=max_ticks, clock=clock)
        store = await asyncio.get_running_loop().run_in_executor(executor, factory)
        return cls(executor, store)

    async def call(self, method: Callable[..., R], *args: Any) -> R:
        """``method`` of ``TickStore`` applied to the store with ``args``, on the buffer's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(method, self._store, *args))

    async def close(self) -> None:
        await self.call(TickStore.close)
        self._executor.shutdown(wait=True)
