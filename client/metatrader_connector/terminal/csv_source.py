"""Loaders for the CSV files MetaTrader 5 exports (Symbols window > Ticks / Bars).

Tick export::

    <DATE>	<TIME>	<BID>	<ASK>	<LAST>	<VOLUME>	<FLAGS>
    2024.01.02	00:00:00.123	1.10371	1.10382			6
    2024.01.02	00:00:00.456		1.10383			4

MT5 writes only the fields a tick changed: an empty BID/ASK (or LAST) cell
means "unchanged", so the previous value is carried forward.  An empty VOLUME
means no traded volume.

Bar export::

    <DATE>	<TIME>	<OPEN>	<HIGH>	<LOW>	<CLOSE>	<TICKVOL>	<VOL>	<SPREAD>
    2024.01.02	00:00:00	1.10371	1.10390	1.10350	1.10380	57	0	8

Columns are matched by their header name, so exports without <TIME> (daily
bars) or with columns in another order load too.  A bar export without a
header line is read in the order above (without <TIME> if it has 8 fields).
Times may omit the seconds (``HH:MM``).  Files may be UTF-8 or
UTF-16 (with a BOM), tab- or comma-separated.  A malformed line raises
``ValueError`` naming the file and line number.  Times are taken as server
time; the simulated server runs on UTC.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal, overload

import numpy as np

from . import constants as c
from .bars import WORK_DTYPE, to_rates
from .market_model import DAY_SECONDS, day_index, day_start

TICK_COLUMNS = ("<DATE>", "<TIME>", "<BID>", "<ASK>", "<LAST>", "<VOLUME>", "<FLAGS>")
BAR_COLUMNS = (
    "<DATE>", "<TIME>", "<OPEN>", "<HIGH>", "<LOW>", "<CLOSE>", "<TICKVOL>", "<VOL>", "<SPREAD>",
)  # fmt: skip
_UNIX_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class CsvExport:
    """A loaded export: ``kind`` is "ticks" or "bars"; ``data`` is the array
    (MT5 tick layout, or work bars with a float real volume); ``digits`` is
    the price precision seen in the file."""

    kind: str
    data: np.ndarray
    digits: int


class _Reader:
    """Line-by-line parsing state shared by both export kinds."""

    def __init__(self, path: Path, *, headerless_bars: bool = False) -> None:
        self.path = Path(path)
        raw = self.path.read_bytes()
        text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8-sig")
        self.lines = text.splitlines()
        if not self.lines:
            raise ValueError(f"{self.path}: empty file, expected an MT5 export header")
        header = self.lines[0].strip()
        self.sep = "\t" if "\t" in header or "," not in header else ","
        self.columns = [name.strip().upper() for name in header.split(self.sep)]
        #: Index in ``lines`` of the first data line (1 after a header line).
        self.first = 1
        if headerless_bars and not header.startswith("<"):
            # No header: MT5's bar columns in their order (daily exports have no <TIME>).
            width = len(self.columns)
            self.columns = list(BAR_COLUMNS) if width != len(BAR_COLUMNS) - 1 else [
                name for name in BAR_COLUMNS if name != "<TIME>"
            ]  # fmt: skip
            self.first = 0
        self._dates: dict[str, int] = {}
        self.max_decimals = 0

    def error(self, lineno: int, message: str) -> ValueError:
        return ValueError(f"{self.path}:{lineno}: {message}")

    @overload
    def index(self, name: str, required: Literal[True]) -> int: ...
    @overload
    def index(self, name: str, required: bool) -> int | None: ...
    def index(self, name: str, required: bool) -> int | None:
        if name in self.columns:
            return self.columns.index(name)
        if required:
            raise self.error(1, f"header lacks the {name} column: {self.lines[0]!r}")
        return None

    def rows(self):
        """(line number, cells) of every non-blank data line."""
        width = len(self.columns)
        for lineno, line in enumerate(self.lines[self.first :], start=self.first + 1):
            if not line.strip():
                continue
            cells = line.rstrip("\r\n").split(self.sep)
            if len(cells) != width:
                raise self.error(lineno, f"expected {width} fields, got {len(cells)}: {line!r}")
            yield lineno, cells

    def timestamp_msc(self, lineno: int, day: str, clock: str) -> int:
        """Milliseconds since 1970 of ``2024.01.02`` + ``00:00:00.123``."""
        days = self._dates.get(day)
        if days is None:
            try:
                y, m, d = day.strip().split(".")
                days = date(int(y), int(m), int(d)).toordinal() - _UNIX_EPOCH_ORDINAL
            except ValueError:
                raise self.error(lineno, f"bad date {day!r}, expected YYYY.MM.DD") from None
            self._dates[day] = days
        try:
            hms, _, frac = clock.strip().partition(".")
            h, mi, s = (hms + ":00").split(":")[:3] if hms.count(":") == 1 else hms.split(":")
            ms = int((frac + "000")[:3]) if frac else 0
            seconds = int(h) * 3600 + int(mi) * 60 + int(s)
            if not (0 <= int(h) < 24 and 0 <= int(mi) < 60 and 0 <= int(s) < 60):
                raise ValueError
        except ValueError:
            raise self.error(lineno, f"bad time {clock!r}, expected HH:MM[:SS[.mmm]]") from None
        return (days * 86_400 + seconds) * 1000 + ms

    def number(self, lineno: int, text: str, column: str, price: bool = False) -> float:
        try:
            value = float(text)
        except ValueError:
            raise self.error(lineno, f"bad {column} value {text!r}") from None
        if not math.isfinite(value):
            raise self.error(lineno, f"bad {column} value {text!r}")
        if price:
            _, dot, decimals = text.strip().partition(".")
            if dot:
                self.max_decimals = max(self.max_decimals, len(decimals))
        return value


def load_ticks_csv(path: Path) -> np.ndarray:
    """Load an MT5 tick export into an array with MT5's tick dtype."""
    return _load_ticks(_Reader(path)).data


def load_rates_csv(path: Path) -> np.ndarray:
    """Load an MT5 bar export into an array with MT5's rates dtype."""
    return to_rates(_load_bars(_Reader(path)).data)


def load_export(path: Path) -> CsvExport:
    """Load either kind of export, telling them apart by the header."""
    reader = _Reader(path)
    if "<BID>" in reader.columns:
        return _load_ticks(reader)
    if "<OPEN>" in reader.columns:
        return _load_bars(reader)
    raise reader.error(1, f"not an MT5 tick or bar export header: {reader.lines[0]!r}")


def _load_ticks(reader: _Reader) -> CsvExport:
    i_date, i_time = reader.index("<DATE>", True), reader.index("<TIME>", True)
    i_bid, i_ask = reader.index("<BID>", True), reader.index("<ASK>", True)
    i_last, i_vol = reader.index("<LAST>", False), reader.index("<VOLUME>", False)
    i_flags = reader.index("<FLAGS>", False)
    rows = []
    bid = ask = last = 0.0
    for lineno, cells in reader.rows():
        msc = reader.timestamp_msc(lineno, cells[i_date], cells[i_time])
        flags = 0
        # Empty cell = unchanged: carry the previous quote forward.
        if cells[i_bid].strip():
            bid = reader.number(lineno, cells[i_bid], "<BID>", price=True)
            flags |= c.TICK_FLAG_BID
        if cells[i_ask].strip():
            ask = reader.number(lineno, cells[i_ask], "<ASK>", price=True)
            flags |= c.TICK_FLAG_ASK
        if i_last is not None and cells[i_last].strip():
            last = reader.number(lineno, cells[i_last], "<LAST>", price=True)
            flags |= c.TICK_FLAG_LAST
        volume = 0.0
        if i_vol is not None and cells[i_vol].strip():
            volume = reader.number(lineno, cells[i_vol], "<VOLUME>")
            flags |= c.TICK_FLAG_VOLUME if volume else 0
        if i_flags is not None and cells[i_flags].strip():
            try:
                flags = int(cells[i_flags])
            except ValueError:
                raise reader.error(lineno, f"bad <FLAGS> value {cells[i_flags]!r}") from None
        rows.append((msc // 1000, bid, ask, last, int(volume), msc, flags, volume))
    data = np.array(rows, dtype=c.TICKS_DTYPE)
    if data.size and np.any(np.diff(data["time_msc"]) < 0):
        data = data[np.argsort(data["time_msc"], kind="stable")]
    return CsvExport("ticks", data, reader.max_decimals)


@dataclass(frozen=True, slots=True)
class BarLine:
    """One bar of an export as written: ``time`` in Unix seconds, prices as their text (exact decimals)."""

    lineno: int
    time: int
    open: str
    high: str
    low: str
    close: str
    tick_volume: int
    volume: str
    spread: int


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line of an export that cannot be read as a bar, and why (the message names file and line)."""

    lineno: int
    error: str


class _BarColumns:
    """Where each bar field is in ``reader``'s lines (by header name, or MT5's order without one)."""

    def __init__(self, reader: _Reader) -> None:
        self.reader = reader
        self.date, self.time = reader.index("<DATE>", True), reader.index("<TIME>", False)
        self.prices = [reader.index(name, True) for name in ("<OPEN>", "<HIGH>", "<LOW>", "<CLOSE>")]
        self.tickvol = reader.index("<TICKVOL>", False)
        self.vol, self.spread = reader.index("<VOL>", False), reader.index("<SPREAD>", False)

    def parse(self, lineno: int, cells: list[str]) -> BarLine:
        """The line's bar; ``ValueError`` naming the file, line and field if a cell is not one."""
        reader = self.reader
        clock = cells[self.time] if self.time is not None else "00:00:00"
        seconds = reader.timestamp_msc(lineno, cells[self.date], clock) // 1000
        o, h, low, c = (self._price(lineno, cells, i) for i in self.prices)
        tickvol = _optional_int(reader, lineno, cells, self.tickvol)
        volume = "0"
        if self.vol is not None and _has(cells, self.vol):
            reader.number(lineno, cells[self.vol], "<VOL>")
            volume = cells[self.vol].strip()
        spread = _optional_int(reader, lineno, cells, self.spread)
        return BarLine(lineno, seconds, o, h, low, c, tickvol, volume, spread)

    def _price(self, lineno: int, cells: list[str], index: int) -> str:
        self.reader.number(lineno, cells[index], self.reader.columns[index], price=True)  # a finite number
        return cells[index].strip()


def read_bar_lines(path: Path) -> Iterator[BarLine | BadLine]:
    """Every data line of an MT5 bar export (with or without its header line), in file order,
    as a bar or as why it is not one: a bad line does not stop the others (``hats import-bars``
    reports each). Raises ``ValueError`` only if the file as a whole is not a bar export."""
    reader = _Reader(path, headerless_bars=True)
    columns = _BarColumns(reader)
    width = len(reader.columns)
    for lineno, line in enumerate(reader.lines[reader.first :], start=reader.first + 1):
        if not line.strip():
            continue
        cells = line.rstrip("\r\n").split(reader.sep)
        if len(cells) != width:
            yield BadLine(lineno, f"{reader.path}:{lineno}: expected {width} fields, got {len(cells)}: {line!r}")
            continue
        try:
            yield columns.parse(lineno, cells)
        except ValueError as exc:
            yield BadLine(lineno, str(exc))


def _load_bars(reader: _Reader) -> CsvExport:
    columns = _BarColumns(reader)
    rows = []
    for lineno, cells in reader.rows():
        bar = columns.parse(lineno, cells)
        o, h, low, close = (float(p) for p in (bar.open, bar.high, bar.low, bar.close))
        if not low <= min(o, close) <= max(o, close) <= h:
            raise reader.error(lineno, f"inconsistent OHLC {o} {h} {low} {close}")
        rows.append((bar.time, o, h, low, close, bar.tick_volume, bar.spread, float(bar.volume)))
    data = np.array(rows, dtype=WORK_DTYPE)
    return CsvExport("bars", np.sort(data, order="time"), reader.max_decimals)


def _has(cells: list[str], index: int | None) -> bool:
    return index is not None and bool(cells[index].strip())


def _optional_int(reader: _Reader, lineno: int, cells: list[str], index: int | None) -> int:
    if index is None or not _has(cells, index):
        return 0
    try:
        return int(cells[index])
    except ValueError:
        raise reader.error(lineno, f"bad {reader.columns[index]} value {cells[index]!r}") from None


class TickReplay:
    """A loaded tick export served day by day, like the generator serves its
    days (see ``history.DaySource``): the file's ticks are the whole history."""

    def __init__(self, ticks: np.ndarray) -> None:
        self._ticks = ticks
        self._msc = ticks["time_msc"]
        self._day_msc = DAY_SECONDS * 1000
        if ticks.size:
            self.first_day = day_index(int(ticks["time"][0]))
            self.last_day: int | None = day_index(int(ticks["time"][-1]))
        else:
            self.first_day, self.last_day = 0, -1

    def day_ticks(self, day: int) -> np.ndarray:
        start = day_start(day) * 1000
        lo = np.searchsorted(self._msc, start, side="left")
        hi = np.searchsorted(self._msc, start + self._day_msc, side="left")
        return self._ticks[lo:hi].copy()
