"""``hats import-bars FILE --symbol S --timeframe TF``: an MT5 bar export into the server's store.

The file (MT5's "Export bars": tab- or comma-separated, with or without its header line) is
read with the connector's own export reader; every bar is checked locally with the rules the
server applies (``shared.bar_history``), then the good ones go, in batches, to
``POST /api/v1/ingest/bars`` through the gateway with a token of the data-collector's client
(or the one given). The server stores only bars it does not hold yet: importing the same file
twice adds nothing the second time. Bars are stored as the timeframe given (no resampling).

Prints what was inserted, what was stored already and every refused row by its line number;
the exit code is 1 if any row was refused, 2 if the import could not be done at all.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from client.data_collector.backfill import INGEST_BARS_PATH, BackfillFailed, refused_rows, with_attempts
from client.metatrader_connector.terminal.csv_source import BadLine, BarLine, read_bar_lines
from client.server_client import ServerClient
from shared.auth.client import ClientCredentials, NoCredentials, TokenRequestFailed
from shared.bar_history import BarBatch, HistoricalBar, check_bars
from shared.events import Timeframe
from shared.settings import PlatformSettings

#: Bars per request (data-bridge takes at most ``DATA_BRIDGE_MAX_BARS_PER_REQUEST``, 10,000 by default).
DEFAULT_BATCH = 5000


@dataclass
class Outcome:
    inserted: int = 0
    already_stored: int = 0
    #: (line number, what is wrong), in file order.
    refused: list[tuple[int, str]] = field(default_factory=list)


def cmd_import_bars(args: argparse.Namespace) -> int:
    settings = PlatformSettings()
    server = args.server or settings.url_of("api-gateway")
    credentials = (
        ClientCredentials(args.client_id, args.client_secret) if args.client_id and args.client_secret else None
    )
    try:
        outcome = asyncio.run(
            import_bars(
                args.file,
                args.symbol,
                Timeframe(args.timeframe),
                server=server,
                credentials=credentials,
                credentials_file=settings.hats_var_dir / "credentials.json",
                batch=max(1, args.batch),
            )
        )
    except (OSError, ValueError, httpx.HTTPError, BackfillFailed, NoCredentials, TokenRequestFailed) as exc:
        print(f"[hats] import-bars: {exc}", file=sys.stderr)
        return 2
    for lineno, reason in outcome.refused:
        print(f"{args.file}:{lineno}: refused: {reason}")
    print(
        f"[hats] {args.file}: {outcome.inserted} bars inserted, {outcome.already_stored} already stored, "
        f"{len(outcome.refused)} rows refused ({args.symbol} {args.timeframe})"
    )
    return 1 if outcome.refused else 0


async def import_bars(
    path: Path,
    symbol: str,
    timeframe: Timeframe,
    *,
    server: str,
    credentials: ClientCredentials | None,
    credentials_file: Path,
    batch: int = DEFAULT_BATCH,
    now_s: float | None = None,
) -> Outcome:
    """Check and send ``path``'s bars; what the server did, and every refused line with its reason."""
    outcome = Outcome()
    BarBatch.model_validate({"symbol": symbol, "timeframe": timeframe, "bars": []})  # the symbol's syntax
    bars, lines = _checked(path, symbol, timeframe, time.time() if now_s is None else now_s, outcome)
    async with httpx.AsyncClient(timeout=30.0) as http:
        client = ServerClient(server, server.rstrip("/") + "/oauth2/token", credentials, credentials_file, http)
        for i in range(0, len(bars), batch):
            await _send(client, symbol, timeframe, bars[i : i + batch], lines[i : i + batch], outcome)
    outcome.refused.sort()
    return outcome


def _checked(
    path: Path, symbol: str, timeframe: Timeframe, now_s: float, outcome: Outcome
) -> tuple[list[HistoricalBar], list[int]]:
    """The file's bars that pass every rule, oldest first, with their line numbers; the others refused."""
    parsed: list[tuple[HistoricalBar, int]] = []
    for line in read_bar_lines(path):
        if isinstance(line, BadLine):
            outcome.refused.append((line.lineno, line.error.split(": ", 1)[-1]))
            continue
        try:
            parsed.append((_historical(line), line.lineno))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            outcome.refused.append((line.lineno, f"{where}: {first['msg']}"))
    batch = BarBatch.model_construct(symbol=symbol, timeframe=timeframe, bars=[bar for bar, _ in parsed])
    errors = {e.row: e for e in check_bars(batch, now_s=now_s)}
    for row, error in errors.items():
        outcome.refused.append((parsed[row][1], f"{error.field}: {error.msg}"))
    good = sorted((item for row, item in enumerate(parsed) if row not in errors), key=lambda item: item[0].time)
    return [bar for bar, _ in good], [lineno for _, lineno in good]


def _historical(line: BarLine) -> HistoricalBar:
    return HistoricalBar(
        time=line.time,
        open=line.open,
        high=line.high,
        low=line.low,
        close=line.close,
        tick_volume=line.tick_volume,
        real_volume=line.volume,
        spread=line.spread,
    )


async def _send(
    client: ServerClient,
    symbol: str,
    timeframe: Timeframe,
    bars: list[HistoricalBar],
    lines: list[int],
    outcome: Outcome,
) -> None:
    while bars:
        body = {
            "symbol": symbol,
            "timeframe": timeframe.value,
            "bars": [bar.model_dump(mode="json") for bar in bars],
        }
        response = await with_attempts(0.5, "storing bars", _poster(client, body))
        if response.status_code == 200:
            result = response.json()
            outcome.inserted += int(result["inserted"])
            outcome.already_stored += int(result["already_stored"])
            return
        refused = refused_rows(response)
        if not refused:
            raise BackfillFailed(f"the server refused the bars: HTTP {response.status_code} {response.text[:300]}")
        for index, why in refused.items():  # a rule only the server knows (its symbols, its clock)
            outcome.refused.append((lines[index], f"{why['field']}: {why['msg']}"))
        bars = [bar for i, bar in enumerate(bars) if i not in refused]
        lines = [line for i, line in enumerate(lines) if i not in refused]


def _poster(client: ServerClient, body: dict[str, Any]) -> Callable[[], Awaitable[httpx.Response]]:
    return lambda: client.post(INGEST_BARS_PATH, body)
