"""Where ticks come from: the local MT5 connector (polled) and files dropped in the inbox."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq

from client.data_collector.buffer import BufferFull, TickBuffer, TickStore
from client.metatrader_connector.terminal.csv_source import load_ticks_csv

log = logging.getLogger(__name__)

PARQUET_COLUMNS = ("symbol", "time_msc", "bid", "ask")


class ConnectorSource:
    """Polls metatrader-connector for each symbol's ticks since its cursor (kept in the buffer)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        symbols: tuple[str, ...],
        buffer: TickBuffer,
        *,
        backfill_s: int,
        headers: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http, self._url, self._symbols, self._buffer = http, base_url.rstrip("/"), symbols, buffer
        self._clock = clock
        #: The client tier's API key, when it has one (``shared.kit.client_key``).
        self._headers = headers or {}
        self._backfill_ms = backfill_s * 1000
        self.reachable = False

    async def poll(self) -> int:
        """Fetch and buffer each symbol's new ticks; stops (cursors unmoved) when the buffer is full."""
        added = 0
        if await self._buffer.call(TickStore.full):
            return added  # nothing fetched that could not be kept
        for symbol in self._symbols:
            name = f"mt5:{symbol}"
            cursor = await self._buffer.call(TickStore.cursor, name)
            if cursor is None:
                cursor = int(self._clock() * 1000) - self._backfill_ms
            try:
                response = await self._http.get(
                    f"{self._url}/api/v1/mt5/ticks",
                    params={"symbol": symbol, "from_msc": cursor, "limit": 10_000},
                    headers=self._headers,
                )
                response.raise_for_status()
            except httpx.HTTPError as exc:
                if self.reachable:
                    log.warning("metatrader-connector unreachable: %s", exc)
                self.reachable = False
                return added
            self.reachable = True
            ticks = response.json()
            if ticks:
                # The cursor is inclusive: ticks sharing the last millisecond come again next
                # time and are dropped as duplicates, so none in that millisecond is missed.
                try:
                    added += await self._buffer.call(
                        TickStore.add_with_cursor, ticks, name, max(t["time_msc"] for t in ticks)
                    )
                except BufferFull:
                    # The cursor stays: the terminal keeps these ticks, fetched again once there is room.
                    return added
        return added


def _decimal_text(value: float) -> str:
    return repr(float(value))


class InboxSource:
    """Ingests MT5 CSV tick exports (``EURUSD*.csv``) and Parquet files, then moves them aside."""

    def __init__(self, inbox: Path, buffer: TickBuffer) -> None:
        self._inbox, self._buffer = inbox, buffer
        for sub in ("done", "failed"):
            (inbox / sub).mkdir(parents=True, exist_ok=True)

    async def scan(self) -> int:
        """Buffer each inbox file, then move it to ``done/``; stops (files left in place) when the buffer is full."""
        added = 0
        for path in await asyncio.to_thread(lambda: sorted(self._inbox.iterdir())):
            if not path.is_file() or path.suffix.lower() not in (".csv", ".parquet"):
                continue
            if await self._buffer.call(TickStore.full):
                return added  # not even read: a large file is not parsed again at every scan while full
            try:
                ticks = await asyncio.to_thread(self._read, path)
                added += await self._buffer.call(TickStore.add, ticks)
                await asyncio.to_thread(shutil.move, path, self._inbox / "done" / path.name)
                log.info("ingested %d ticks from %s", len(ticks), path.name)
            except BufferFull:
                return added  # the file stays in the inbox and is read again once there is room
            except (ValueError, KeyError, OSError) as exc:
                log.error("cannot ingest %s: %s", path.name, exc)
                await asyncio.to_thread(self._set_aside, path, exc)
        return added

    def _set_aside(self, path: Path, error: Exception) -> None:
        shutil.move(path, self._inbox / "failed" / path.name)
        (self._inbox / "failed" / f"{path.name}.error").write_text(f"{error}\n")

    @staticmethod
    def _read(path: Path) -> list[dict]:
        if path.suffix.lower() == ".csv":
            symbol = path.stem.split("_")[0].upper()
            array = load_ticks_csv(path)
            return [_tick(symbol, row) for row in array]
        table = pq.read_table(path)
        missing = [c for c in PARQUET_COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(f"parquet file lacks columns {missing}")
        rows = table.to_pylist()
        return [
            {
                "symbol": str(r["symbol"]).upper(),
                "time_msc": int(r["time_msc"]),
                "bid": str(r["bid"]),
                "ask": str(r["ask"]),
                "last": None if r.get("last") in (None, 0) else str(r["last"]),
                "volume": str(r.get("volume") or 0),
                "flags": int(r.get("flags") or 0),
            }
            for r in rows
        ]


def _tick(symbol: str, row: np.void) -> dict:
    return {
        "symbol": symbol,
        "time_msc": int(row["time_msc"]),
        "bid": _decimal_text(row["bid"]),
        "ask": _decimal_text(row["ask"]),
        "last": _decimal_text(row["last"]) if row["last"] else None,
        "volume": _decimal_text(row["volume_real"]) if row["volume_real"] else "0",
        "flags": int(row["flags"]),
    }
