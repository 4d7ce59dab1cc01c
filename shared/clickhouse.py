"""ClickHouse access: chdb in this process (embedded) or a server via clickhouse-driver.

Both speak the same SQL; only transport differs. chdb owns its data directory, so
exactly one process (database-service, the owner of the stores) opens it; services get
it from the kit's ``ClickHouse`` dependency, which also applies their migrations. Calls are blocking C calls, run
on one worker thread so the event loop keeps serving while ClickHouse works.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import orjson


class ClickHouse(Protocol):
    async def execute(self, sql: str) -> None: ...
    async def rows(self, sql: str) -> list[list[Any]]: ...
    async def insert(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None: ...
    def close(self) -> None: ...


def literal(value: Any) -> str:
    """Render a Python value as a ClickHouse literal (strings escaped; used in WHERE clauses)."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return f"'{value}'"
    if isinstance(value, dt.datetime):
        return "'" + value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f") + "'"
    raise TypeError(f"no ClickHouse literal for {type(value).__name__}")


def _decimal_as_text(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"no JSON form for {type(value).__name__}")


class ChdbClickHouse:
    """The embedded engine: ``chdb`` session on a data directory under ``var/``."""

    def __init__(self, path: Path) -> None:
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chdb")
        self._session = session.Session(str(path))  # type: ignore[no-untyped-call]

    async def _run(self, sql: str, fmt: str) -> bytes:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._executor, self._session.query, sql, fmt)
        data: bytes = result.bytes()
        return data

    async def execute(self, sql: str) -> None:
        await self._run(sql, "TabSeparated")

    async def rows(self, sql: str) -> list[list[Any]]:
        raw = await self._run(sql, "JSONCompactEachRow")
        return [orjson.loads(line) for line in raw.splitlines() if line]

    async def insert(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        # One JSON array per row, rendered by orjson (UUIDs and datetimes natively, Decimals
        # as exact strings): half the CPU of rendering SQL literals, and no escaping to get wrong.
        if not rows:
            return
        data = b"\n".join([orjson.dumps(row, default=_decimal_as_text) for row in rows]).decode()
        await self._run(
            f"INSERT INTO {table} ({', '.join(columns)}) SETTINGS date_time_input_format = "
            f"'best_effort' FORMAT JSONCompactEachRow\n{data}",
            "TabSeparated",
        )

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._session.close()  # type: ignore[no-untyped-call]


class DriverClickHouse:
    """A ClickHouse server over the native protocol (``CLICKHOUSE_URL=clickhouse://...``)."""

    def __init__(self, url: str) -> None:
        from clickhouse_driver import Client

        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="clickhouse")
        self._url = url
        self._local = threading.local()
        self._client_type = Client

    def _client(self) -> Any:
        # clickhouse-driver clients are not thread-safe: one per worker thread.
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._client_type.from_url(self._url)
        return client

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def execute(self, sql: str) -> None:
        await self._call(lambda: self._client().execute(sql))

    async def rows(self, sql: str) -> list[list[Any]]:
        result = await self._call(lambda: self._client().execute(sql))
        return [list(r) for r in result]

    async def insert(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            await self._call(
                lambda: self._client().execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES", list(rows))
            )

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def open_clickhouse(url: str | None, var_dir: Path) -> ClickHouse:
    return DriverClickHouse(url) if url else ChdbClickHouse(var_dir / "clickhouse")
