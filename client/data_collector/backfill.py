"""Backfill jobs: bars of a past range, from the terminal's history to the server's store.

A job pages ``GET /api/v1/mt5/rates/range`` of the local connector (closed bars, oldest
first) for each symbol and timeframe, and sends each page to ``POST /api/v1/ingest/bars``
through the gateway with the collector's own token. The server stores only bars it does not
hold yet, so a job run twice over the same range adds nothing the second time, and a job
cut short (a restart, a failure) is simply started again.

Jobs run one at a time (they share the terminal's one thread with live polling) and live in
memory: a restart forgets them, which costs a repeat, never a duplicate.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx

from client.server_client import ServerClient
from shared.auth.client import NoCredentials, TokenRequestFailed, retry_after_s
from shared.events import Timeframe

log = logging.getLogger(__name__)

INGEST_BARS_PATH = "/api/v1/ingest/bars"
RATES_RANGE_PATH = "/api/v1/mt5/rates/range"
#: Jobs kept for ``GET .../backfill/{id}`` after they ended (oldest forgotten first).
KEEP_JOBS = 100
#: Attempts at a page the connector or the server could not handle for now, and the first pause (doubling).
ATTEMPTS = 5
FIRST_PAUSE_S = 0.5

State = Literal["queued", "running", "done", "failed"]


class BackfillFailed(Exception):
    """A page could not be fetched or stored after every attempt, or the server refused us for good."""


@dataclass
class SeriesProgress:
    """One (symbol, timeframe) of a job."""

    symbol: str
    timeframe: str
    #: Bars the terminal gave, and what the server did with them.
    fetched: int = 0
    inserted: int = 0
    already_stored: int = 0
    #: Rows the server refused (``{"time", "field", "msg"}``), never stored; the rest of their page was.
    refused: list[dict[str, Any]] = field(default_factory=list)
    #: Everything before this open time (Unix seconds) is done.
    position: int = 0
    done: bool = False


@dataclass
class BackfillJob:
    id: str
    start: int
    end: int
    series: list[SeriesProgress]
    state: State = "queued"
    error: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None

    def percent(self) -> float:
        """Share of the job's series x time range covered so far."""
        span = self.end - self.start + 1
        covered = sum(span if s.done else max(0, min(s.position, self.end + 1) - self.start) for s in self.series)
        return round(100.0 * covered / (span * len(self.series)), 1) if self.series else 100.0

    def as_json(self) -> dict[str, Any]:
        totals = {k: sum(getattr(s, k) for s in self.series) for k in ("fetched", "inserted", "already_stored")}
        return {
            "id": self.id,
            "state": self.state,
            "percent": self.percent(),
            "start": self.start,
            "end": self.end,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            **totals,
            "refused": sum(len(s.refused) for s in self.series),
            "series": [asdict(s) for s in self.series],
        }


class Backfills:
    """Runs backfill jobs in the background, one at a time, and keeps them to be asked about."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        connector_url: str,
        server: ServerClient,
        *,
        page_bars: int,
        headers: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        first_pause_s: float = FIRST_PAUSE_S,
    ) -> None:
        self._http, self._connector = http, connector_url.rstrip("/")
        self._server, self._page = server, page_bars
        self._headers = headers or {}
        self._clock = clock
        self._first_pause = first_pause_s
        self._jobs: OrderedDict[str, BackfillJob] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._one_at_a_time = asyncio.Lock()

    def submit(self, symbols: list[str], timeframes: list[Timeframe], start: int, end: int) -> BackfillJob:
        series = [SeriesProgress(s, tf.value, position=start) for s in symbols for tf in timeframes]
        job = BackfillJob(uuid.uuid4().hex, start, end, series, created_at=self._clock())
        self._jobs[job.id] = job
        while len(self._jobs) > KEEP_JOBS:
            oldest = next(iter(self._jobs.values()))
            if oldest.state in ("queued", "running"):
                break
            self._jobs.popitem(last=False)
        task = asyncio.create_task(self._run(job), name=f"backfill-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def now(self) -> float:
        """This collector's clock (Unix seconds)."""
        return self._clock()

    async def history(self, symbols: list[str], timeframes: list[Timeframe], seconds: int) -> None:
        """Backfill the last ``seconds`` until one job of it succeeds, then idle (a background task).

        On a first start the collector's credentials are written by user-service after the
        collector may have started, and the server may still be starting: a failed job is tried
        again after a pause that doubles up to a minute.
        """
        pause = self._first_pause
        while True:
            end = int(self._clock())
            job = self.submit(symbols, timeframes, end - seconds, end)
            while job.state in ("queued", "running"):
                await asyncio.sleep(0.5)
            if job.state == "done":
                break
            log.info("history backfill failed (%s); trying again in %.0f s", job.error, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 60.0)
        await asyncio.Event().wait()

    def get(self, job_id: str) -> BackfillJob | None:
        return self._jobs.get(job_id)

    def jobs(self) -> list[BackfillJob]:
        return list(self._jobs.values())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, job: BackfillJob) -> None:
        async with self._one_at_a_time:
            job.state, job.started_at = "running", self._clock()
            log.info("backfill %s: %d series from %d to %d", job.id, len(job.series), job.start, job.end)
            try:
                for series in job.series:
                    await self._series(job, series)
            except asyncio.CancelledError:
                job.state, job.error, job.ended_at = "failed", "the collector stopped", self._clock()
                raise
            except Exception as exc:
                job.state, job.error, job.ended_at = "failed", f"{type(exc).__name__}: {exc}", self._clock()
                log.error("backfill %s failed: %s", job.id, job.error)
                return
            job.state, job.ended_at = "done", self._clock()
            log.info("backfill %s done: %s", job.id, {k: v for k, v in job.as_json().items() if k != "series"})

    async def _series(self, job: BackfillJob, series: SeriesProgress) -> None:
        cursor = job.start
        while cursor <= job.end:
            page = await self._fetch(series, cursor, job.end)
            if page:
                series.fetched += len(page)
                await self._store(series, page)
            if len(page) < self._page:
                break  # the range is exhausted (or only a forming bar is left)
            cursor = page[-1]["time"] + 1
            series.position = cursor
        series.position, series.done = job.end + 1, True

    async def _fetch(self, series: SeriesProgress, cursor: int, end: int) -> list[dict[str, Any]]:
        params: dict[str, str | int] = {
            "symbol": series.symbol,
            "timeframe": series.timeframe,
            "from": cursor,
            "to": end,
            "limit": self._page,
        }
        response = await with_attempts(
            self._first_pause,
            f"rates of {series.symbol} {series.timeframe}",
            lambda: self._http.get(self._connector + RATES_RANGE_PATH, params=params, headers=self._headers),
        )
        if response.status_code != 200:
            raise BackfillFailed(f"the connector refused rates of {series.symbol}: HTTP {response.status_code} "
                                 f"{response.text[:200]}")  # fmt: skip
        rows: list[dict[str, Any]] = response.json()
        return rows

    async def _store(self, series: SeriesProgress, page: list[dict[str, Any]]) -> None:
        bars = [_bar(row) for row in page]
        while bars:
            body = {"symbol": series.symbol, "timeframe": series.timeframe, "bars": bars}
            response = await with_attempts(
                self._first_pause,
                f"storing bars of {series.symbol} {series.timeframe}",
                functools.partial(self._server.post, INGEST_BARS_PATH, body),
            )
            if response.status_code == 200:
                result = response.json()
                series.inserted += int(result["inserted"])
                series.already_stored += int(result["already_stored"])
                return
            refused = refused_rows(response)
            if not refused:
                raise BackfillFailed(f"the server refused the bars: HTTP {response.status_code} {response.text[:300]}")
            # The page is all or nothing: keep the refused rows' reasons, send the rest again.
            for index, row in sorted(refused.items()):
                series.refused.append({"time": bars[index]["time"], **row})
            bars = [bar for i, bar in enumerate(bars) if i not in refused]


async def with_attempts(first_pause_s: float, what: str, request: Callable[[], Any]) -> httpx.Response:
    """``request()`` until it is answered with something other than "not now" (429, 502-504) or a
    transport error, at most ``ATTEMPTS`` times; ``BackfillFailed`` after that."""
    pause = first_pause_s
    for attempt in range(ATTEMPTS):
        if attempt:
            await asyncio.sleep(pause)
            pause *= 2
        try:
            response: httpx.Response = await request()
        except (TokenRequestFailed, NoCredentials):
            raise  # retrying would only count towards the gateway's lockout
        except httpx.HTTPError as exc:
            log.warning("%s failed (%s), attempt %d of %d", what, exc, attempt + 1, ATTEMPTS)
            continue
        if response.status_code not in (429, 502, 503, 504):
            return response
        pause = max(pause, retry_after_s(response) or 0.0)
        log.warning("%s answered %d, attempt %d of %d", what, response.status_code, attempt + 1, ATTEMPTS)
    raise BackfillFailed(f"{what}: no answer after {ATTEMPTS} attempts")


def _price(value: float | str) -> str:
    # The connector rounds prices to the symbol's digits; a float's shortest form is that decimal.
    return value if isinstance(value, str) else repr(float(value))


def _bar(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "time": int(row["time"]),
        "open": _price(row["open"]),
        "high": _price(row["high"]),
        "low": _price(row["low"]),
        "close": _price(row["close"]),
        "tick_volume": int(row.get("tick_volume", 0)),
        "real_volume": str(row.get("real_volume", 0)),
        "spread": row.get("spread"),
    }


def refused_rows(response: httpx.Response) -> dict[int, dict[str, str]]:
    """The rows a 422 names (index -> field and reason); empty if it names none (the batch itself was refused)."""
    if response.status_code != 422:
        return {}
    try:
        errors = response.json().get("errors", [])
    except ValueError:
        return {}
    rows: dict[int, dict[str, str]] = {}
    for error in errors:
        loc = error.get("loc", [])
        # data-bridge's own check names "row"; the model's (FastAPI's) says ["body", "bars", i, field].
        index = error.get("row", loc[2] if len(loc) > 3 and loc[:2] == ["body", "bars"] else None)
        if not isinstance(index, int) or index < 0:
            return {}
        rows.setdefault(index, {"field": str(error.get("field", loc[-1] if loc else "")), "msg": error.get("msg", "")})
    return rows
