"""``SimulatedTerminal``: the ``MetaTrader5`` module API over deterministic data.

An instance behaves like the module: ``initialize()`` first, then
``copy_rates_*``, ``copy_ticks_*``, ``symbol_info*``... returning the same
types (numpy structured arrays with MT5's dtypes, named tuples with MT5's
field names), ``None``/``False`` on failure with the reason in
``last_error()``, and the module's constants as attributes, so code written
against ``import MetaTrader5 as mt5`` runs unchanged against an instance.

Its notion of "now" is an injectable clock: only ticks at or before now
exist, the bar containing now is the forming bar (position 0), and
``symbol_info_tick`` is the latest tick.  The simulated trade server runs on
UTC, so server time == UTC and naive datetimes are taken as UTC.

Trading (``order_send``, ``order_check``, ``orders_get``, ``positions_get``,
``history_orders_get``, ``history_deals_get``...) runs against the same market:
see :mod:`.trading`.  Two test facilities the real module does not have:
:meth:`SimulatedTerminal.fail_next_order_send` loses the answer of the next
``order_send`` as a broken IPC link would, :meth:`SimulatedTerminal.limit_liquidity`
makes market orders fill partially.
"""

from __future__ import annotations

import functools
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path, PureWindowsPath
from typing import TypeGuard

import numpy as np
import orjson

from shared.private_files import write_private

from . import bars as b
from . import constants as c
from .csv_source import TickReplay, load_export
from .history import BarHistory, TickHistory, select_ticks
from .market_model import MarketModel, day_index, day_start
from .records import (
    AccountInfo,
    OrderCheckResult,
    OrderSendResult,
    SymbolInfo,
    TerminalInfo,
    Tick,
    TradeDeal,
    TradeOrder,
    TradePosition,
    TradeRequest,
)
from .symbols import DEFAULT_SPECS, SymbolSpec, generic_spec
from .trading import DEFAULT_COMMISSION_PER_LOT, BadRequest, TradingDesk, parse_request

BUILD = 5120
VERSION = (500, BUILD, "20 Jun 2025")
MAXBARS = 100_000  # the terminal's "Max bars in chart", which caps bar requests
DEFAULT_LOGIN = 62_000_001
SERVER = "SimulatedBroker-Demo"
COMPANY = "Simulated Broker Ltd"
DEPOSIT = 10_000.0


class _CallFailed(Exception):
    """Raised inside an API method to fail it with an MT5 error code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _api(fail: object = None, needs_connection: bool = True):
    """Wrap a public method: serialise calls (the real module funnels everything
    through one IPC channel), refuse it before ``initialize()`` with
    "No IPC connection", turn ``_CallFailed`` into ``fail`` + ``last_error``,
    and record success otherwise."""

    def decorate(method):
        @functools.wraps(method)
        def wrapper(self: SimulatedTerminal, *args, **kwargs):
            with self._lock:
                if needs_connection and not self._connected:
                    return self._set_error(c.RES_E_INTERNAL_FAIL_CONNECT, fail)
                try:
                    result = method(self, *args, **kwargs)
                except _CallFailed as failure:
                    return self._set_error(failure.code, fail)
                return self._set_error(c.RES_S_OK, result)

        return wrapper

    return decorate


@dataclass
class _Symbol:
    spec: SymbolSpec
    history: TickHistory | BarHistory
    custom: bool
    selected: bool = True


class SimulatedTerminal:
    """A MetaTrader 5 terminal simulated in-process (see the module docstring).

    ``seed`` selects the generated market; ``symbols`` lists generated symbols
    (names from ``DEFAULT_SPECS`` or ``SymbolSpec`` objects; default: EURUSD,
    GBPUSD, XAUUSD, BTCUSD); ``csv_sources`` maps symbol names to MT5 tick or
    bar exports that are replayed instead of generated; ``clock`` returns the
    current Unix time in seconds.  The trading account starts with ``deposit``
    USD, is netting (``margin_mode=ACCOUNT_MARGIN_MODE_RETAIL_NETTING``) or
    hedging, and pays ``commission_per_lot`` USD per lot on every deal.  With
    ``trade_state`` (a JSON file) the account's orders, positions and deals are
    saved after every change and taken over by the next terminal started on the
    same file, as a real broker keeps them while a terminal restarts.
    """

    def __init__(
        self,
        *,
        seed: int = 20240101,
        symbols: Sequence[str | SymbolSpec] | None = None,
        clock: Callable[[], float] = time.time,
        csv_sources: Mapping[str, Path] | None = None,
        deposit: float = DEPOSIT,
        margin_mode: int = c.ACCOUNT_MARGIN_MODE_RETAIL_NETTING,
        commission_per_lot: float = DEFAULT_COMMISSION_PER_LOT,
        trade_state: Path | None = None,
    ) -> None:
        self._seed = int(seed)
        self._clock = clock
        self._lock = threading.RLock()
        self._connected = False
        self._error: tuple[int, str] = (c.RES_S_OK, c.ERROR_MESSAGES[c.RES_S_OK])
        self._login = DEFAULT_LOGIN
        self._server = SERVER
        self._path = "C:\\Program Files\\MetaTrader 5"
        self._symbols: dict[str, _Symbol] = {}
        csv_sources = dict(csv_sources or {})
        wanted = list(DEFAULT_SPECS.values() if symbols is None else symbols)
        names = [e.name if isinstance(e, SymbolSpec) else e for e in wanted]
        # Listed symbols keep their order; exports of unlisted symbols follow.
        wanted += [name for name in csv_sources if name not in names]
        for entry in wanted:
            name = entry.name if isinstance(entry, SymbolSpec) else entry
            if name in csv_sources:
                self._symbols[name] = self._replayed_symbol(name, Path(csv_sources[name]))
                continue
            spec = entry if isinstance(entry, SymbolSpec) else DEFAULT_SPECS.get(entry)
            if spec is None:
                known = ", ".join(DEFAULT_SPECS)
                raise ValueError(f"no generator for symbol {entry!r} (known: {known})")
            history = TickHistory(MarketModel(spec, self._seed), spec.point)
            self._symbols[name] = _Symbol(spec, history, custom=False)
        self._desk = TradingDesk(
            _MarketView(self), opened_msc=self._now_msc(), deposit=deposit,
            margin_mode=margin_mode, commission_per_lot=commission_per_lot,
        )  # fmt: skip
        # Queued order_send faults (test facility): True = executed but answer lost.
        self._send_faults: deque[bool] = deque()
        self._trade_state = Path(trade_state) if trade_state is not None else None
        if self._trade_state is not None and self._trade_state.exists():
            self._desk.load_state(orjson.loads(self._trade_state.read_bytes()))
        self._saved_version = self._desk.version

    @staticmethod
    def _replayed_symbol(name: str, path: Path) -> _Symbol:
        export = load_export(path)
        known = DEFAULT_SPECS.get(name)
        if known is not None:
            spec = known
        else:
            prices = export.data["bid" if export.kind == "ticks" else "close"]
            ref = float(np.median(prices)) if prices.size else 1.0
            spec = generic_spec(name, export.digits, ref)
        if export.kind == "ticks":
            history: TickHistory | BarHistory = TickHistory(TickReplay(export.data), spec.point)
        else:
            history = BarHistory(export.data, spec.point)
        return _Symbol(spec, history, custom=known is None)

    # --- error state ------------------------------------------------------------
    def _set_error(self, code: int, result: object) -> object:
        self._error = (code, c.ERROR_MESSAGES[code])
        return result

    def last_error(self) -> tuple[int, str]:
        """(code, message) of the last call, e.g. ``(1, 'Success')``."""
        return self._error

    # --- connection -------------------------------------------------------------
    @_api(fail=False, needs_connection=False)
    def initialize(
        self,
        path: str | PathLike[str] | None = None,
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
        portable: bool = False,
    ) -> bool:
        """Connect to the (simulated) terminal; optionally log in to ``login``.

        As with the real terminal, ``login`` must be an ``int``; any password
        is accepted (there is no account database to check it against).
        """
        if path is not None and not isinstance(path, (str, PathLike)):
            raise _CallFailed(c.RES_E_INVALID_PARAMS)
        self._check_credentials(login, password, server, timeout)
        if path is not None:
            # MT5 is given the terminal64.exe path; terminal_info reports its folder.
            where = PureWindowsPath(path)
            self._path = str(where.parent if where.suffix.lower() == ".exe" else where)
        self._connected = True
        self._apply_login(login, server)
        return True

    @_api(fail=False)
    def login(
        self,
        login: int,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
    ) -> bool:
        """Switch the connected terminal to trading account ``login``."""
        self._check_credentials(login, password, server, timeout)
        self._apply_login(login, server)
        return True

    @staticmethod
    def _check_credentials(login, password, server, timeout) -> None:
        valid = (
            (login is None or (isinstance(login, int) and not isinstance(login, bool) and login > 0))
            and (password is None or isinstance(password, str))
            and (server is None or isinstance(server, str))
            and (timeout is None or (isinstance(timeout, int) and timeout >= 0))
        )
        if not valid:
            raise _CallFailed(c.RES_E_INVALID_PARAMS)

    def _apply_login(self, login: int | None, server: str | None) -> None:
        if login is not None:
            self._login = login
        if server:
            self._server = server

    @_api(fail=None, needs_connection=False)
    def shutdown(self) -> None:
        """Close the connection; later calls fail until ``initialize()``."""
        self._connected = False

    @_api()
    def version(self) -> tuple[int, int, str]:
        """(terminal version, build, build date)."""
        return VERSION

    @_api()
    def terminal_info(self) -> TerminalInfo:
        """Terminal properties (connected, build, maxbars, paths...)."""
        return TerminalInfo(
            connected=True, trade_allowed=True, build=BUILD, maxbars=MAXBARS,
            ping_last=31_250, company=COMPANY, name="MetaTrader 5 (simulated)",
            path=self._path, data_path=self._path, commondata_path=self._path,
        )  # fmt: skip

    @_api()
    def account_info(self) -> AccountInfo:
        """The demo account: balance, equity, margin... of the simulated trading."""
        now = self._advance()
        return self._desk.account(self._account_base(), now)

    def _account_base(self) -> AccountInfo:
        """The account's identity; the desk fills in the money."""
        return AccountInfo(
            login=self._login, trade_mode=c.ACCOUNT_TRADE_MODE_DEMO, leverage=100,
            margin_so_mode=c.ACCOUNT_STOPOUT_MODE_PERCENT, name="Simulated Trader",
            server=self._server, currency="USD", company=COMPANY,
        )  # fmt: skip

    # --- symbols ----------------------------------------------------------------
    @_api()
    def symbols_total(self) -> int:
        """Number of symbols the broker offers (selected or not)."""
        return len(self._symbols)

    @_api()
    def symbols_get(self, group: str | None = None) -> tuple[SymbolInfo, ...]:
        """Infos of all symbols, or of those matching an MT5 group filter such
        as ``"*USD*,!XAU*"`` (masks with ``*``; ``!`` excludes)."""
        if group is not None and not isinstance(group, str):
            raise _CallFailed(c.RES_E_INVALID_PARAMS)
        wanted = match_group(self._symbols.values(), group)
        return tuple(self._symbol_info(symbol) for symbol in wanted)

    @_api()
    def symbol_info(self, symbol: str) -> SymbolInfo:
        """Properties and current market state of ``symbol``."""
        return self._symbol_info(self._get(symbol, c.RES_E_NOT_FOUND))

    @_api()
    def symbol_info_tick(self, symbol: str) -> Tick:
        """The latest tick of ``symbol`` at or before now."""
        entry = self._get(symbol, c.RES_E_NOT_FOUND)
        if not entry.selected:
            # The terminal only streams quotes for symbols in Market Watch.
            raise _CallFailed(c.RES_E_FAIL)
        return self._tick(entry)

    @_api(fail=False)
    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        """Show (or hide) ``symbol`` in Market Watch."""
        self._get(symbol, c.RES_E_FAIL).selected = bool(enable)
        return True

    # --- history ------------------------------------------------------------------
    @_api()
    def copy_rates_from(self, symbol: str, timeframe: int, date_from, count: int) -> np.ndarray:
        """``count`` bars opening at or before ``date_from``, oldest first."""
        entry, now = self._get(symbol), self._now_msc()
        _check_timeframe(timeframe)
        count = _check_count(count)
        bars = entry.history.rates_before(timeframe, _seconds(date_from), count, now)
        return b.to_rates(bars)

    @_api()
    def copy_rates_from_pos(self, symbol: str, timeframe: int, start_pos: int, count: int) -> np.ndarray:
        """``count`` bars ending ``start_pos`` bars before the current one
        (position 0 is the bar forming now), oldest first."""
        entry, now = self._get(symbol), self._now_msc()
        _check_timeframe(timeframe)
        count = _check_count(count)
        if not _is_int(start_pos) or start_pos < 0:
            raise _CallFailed(c.RES_E_INVALID_PARAMS)
        if start_pos >= MAXBARS:
            raise _CallFailed(c.RES_E_FAIL)
        bars = entry.history.rates_before(timeframe, now // 1000, start_pos + count, now)
        if start_pos >= bars.size:
            raise _CallFailed(c.RES_E_FAIL)  # nothing that far back
        return b.to_rates(bars[: bars.size - start_pos][-count:])

    @_api()
    def copy_rates_range(self, symbol: str, timeframe: int, date_from, date_to) -> np.ndarray:
        """Bars opening within ``[date_from, date_to]``, oldest first."""
        entry, now = self._get(symbol), self._now_msc()
        _check_timeframe(timeframe)
        start, end = _seconds(date_from), _seconds(date_to)
        if end < start:
            raise _CallFailed(c.RES_E_INVALID_PARAMS)
        # The real terminal refuses ranges that could hold more than maxbars
        # bars, whatever they actually hold; doing the same also bounds work.
        if (end - start) // b.timeframe_seconds(timeframe) > MAXBARS:
            raise _CallFailed(c.RES_E_INVALID_PARAMS)
        return b.to_rates(entry.history.rates_range(timeframe, start, end, now))

    @_api()
    def copy_ticks_from(self, symbol: str, date_from, count: int, flags: int) -> np.ndarray:
        """The first ``count`` ticks at or after ``date_from`` (up to now)."""
        entry, now = self._get(symbol), self._now_msc()
        count = _check_count(count, limit=None)
        _check_tick_flags(flags)
        return entry.history.ticks_from(_seconds(date_from) * 1000, count, now, flags)

    @_api()
    def copy_ticks_range(self, symbol: str, date_from, date_to, flags: int) -> np.ndarray:
        """Ticks with ``date_from <= time <= date_to`` (and not after now)."""
        entry, now = self._get(symbol), self._now_msc()
        _check_tick_flags(flags)
        start, end = _seconds(date_from), _seconds(date_to)
        if end < start:
            raise _CallFailed(c.RES_E_INVALID_PARAMS)
        ticks = entry.history.ticks_range(start * 1000, min(end * 1000, now))
        return select_ticks(ticks, flags)

    # --- trading ----------------------------------------------------------------------
    @_api()
    def order_send(self, request: object) -> OrderSendResult:
        """Send a trade request (a dict of MqlTradeRequest fields) to the trade server.

        The answer carries the server's retcode (DONE, PLACED, INVALID_VOLUME,
        MARKET_CLOSED...); ``None`` with ``last_error()`` when the request is not a
        well-formed dict, or when the answer was lost (see :meth:`fail_next_order_send`).
        """
        parsed, now = self._trade_request(request), self._advance()
        lost = self._send_faults.popleft() if self._send_faults else None
        if lost is False:  # the request never reached the server
            raise _CallFailed(c.RES_E_INTERNAL_FAIL_TIMEOUT)
        result = self._desk.send(parsed, now)
        self._save_trades()
        if lost:  # executed, but the answer never came back
            raise _CallFailed(c.RES_E_INTERNAL_FAIL_TIMEOUT)
        return result

    @_api()
    def order_check(self, request: object) -> OrderCheckResult:
        """Whether the trade server would accept ``request`` (retcode 0) and the
        account's balance, equity and margin were it executed."""
        parsed, now = self._trade_request(request), self._advance()
        return self._desk.check(parsed, self._account_base(), now)

    @_api()
    def order_calc_margin(self, action: int, symbol: str, volume: float, price: float) -> float:
        """Margin in the account currency of a buy/sell (``ORDER_TYPE_BUY``/``SELL``)."""
        self._get(symbol, c.RES_E_INVALID_PARAMS)
        margin = self._desk.calc_margin(action, symbol, _number(volume), _number(price))
        if margin is None:
            raise _CallFailed(c.RES_E_INVALID_PARAMS)
        return margin

    @_api()
    def order_calc_profit(
        self, action: int, symbol: str, volume: float, price_open: float, price_close: float
    ) -> float:
        """Profit in the account currency of a buy/sell opened and closed at the given prices."""
        self._get(symbol, c.RES_E_INVALID_PARAMS)
        profit = self._desk.calc_profit(action, symbol, _number(volume), _number(price_open), _number(price_close))
        if profit is None:
            raise _CallFailed(c.RES_E_INVALID_PARAMS)
        return profit

    @_api()
    def orders_total(self) -> int:
        """Number of active (pending) orders."""
        return len(self._desk.orders(self._advance()))

    @_api()
    def orders_get(
        self, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradeOrder, ...]:
        """Active orders, all or those of one ``symbol``, a ``group`` filter or a ``ticket``."""
        records = self._desk.orders(self._advance())
        return tuple(self._filtered(records, symbol, group, ticket, lambda o: o.ticket))

    @_api()
    def positions_total(self) -> int:
        """Number of open positions."""
        return len(self._desk.positions(self._advance()))

    @_api()
    def positions_get(
        self, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradePosition, ...]:
        """Open positions, all or those of one ``symbol``, a ``group`` filter or a ``ticket``."""
        records = self._desk.positions(self._advance())
        return tuple(self._filtered(records, symbol, group, ticket, lambda p: p.ticket))

    @_api()
    def history_orders_total(self, date_from: object, date_to: object) -> int:
        """Number of finished orders set up within ``[date_from, date_to]``."""
        self._advance()
        start, end = _seconds(date_from), _seconds(date_to)
        return sum(start <= o.time_setup <= end for o in self._desk.history_orders())

    @_api()
    def history_orders_get(
        self, date_from: object = None, date_to: object = None, group: str | None = None,
        *, ticket: int | None = None, position: int | None = None,
    ) -> tuple[TradeOrder, ...]:  # fmt: skip
        """Finished orders: set up within ``[date_from, date_to]`` (optionally of a
        ``group``), or the one with ``ticket``, or those of ``position``."""
        self._advance()
        pick = _history_filter(date_from, date_to, group, ticket, position)
        records = self._desk.history_orders()
        chosen = self._in_group(records, group)
        return tuple(o for o in chosen if pick(o.time_setup, o.ticket, o.position_id))

    @_api()
    def history_deals_total(self, date_from: object, date_to: object) -> int:
        """Number of deals done within ``[date_from, date_to]``."""
        self._advance()
        start, end = _seconds(date_from), _seconds(date_to)
        return sum(start <= d.time <= end for d in self._desk.history_deals())

    @_api()
    def history_deals_get(
        self, date_from: object = None, date_to: object = None, group: str | None = None,
        *, ticket: int | None = None, position: int | None = None,
    ) -> tuple[TradeDeal, ...]:  # fmt: skip
        """Deals: done within ``[date_from, date_to]`` (optionally of a ``group``), or
        those of the order ``ticket``, or of ``position``."""
        self._advance()
        pick = _history_filter(date_from, date_to, group, ticket, position)
        records = self._desk.history_deals()
        chosen = self._in_group(records, group) if group is not None else records
        return tuple(d for d in chosen if pick(d.time, d.order, d.position_id))

    def fail_next_order_send(self, *, executed: bool = True) -> None:
        """Test facility, not part of the MetaTrader5 API: the next ``order_send``
        returns ``None`` with ``last_error() == (-10005, 'IPC timeout')``.

        With ``executed=True`` the trade server has executed the request (its
        order and deals turn up in ``orders_get``/``history_*_get``, carrying the
        request's ``comment``); with ``executed=False`` it never got it.  Calls
        queue up: each consumes one ``order_send``.
        """
        with self._lock:
            self._send_faults.append(bool(executed))

    def limit_liquidity(self, symbol: str, lots: float | None) -> None:
        """Test facility, not part of the MetaTrader5 API: market orders on ``symbol``
        find at most ``lots`` (``None``: unlimited again).  A larger fill-or-kill
        order is rejected (10006); immediate-or-cancel fills ``lots`` and answers
        DONE_PARTIAL (10010), its order ending canceled with the rest as ``volume_current``.
        """
        with self._lock:
            if lots is None:
                self._desk.liquidity.pop(symbol, None)
            else:
                self._desk.liquidity[symbol] = float(lots)

    def _trade_request(self, request: object) -> TradeRequest:
        try:
            return parse_request(request)
        except BadRequest:
            raise _CallFailed(c.RES_E_INVALID_PARAMS) from None

    def _advance(self) -> int:
        """Let the trade server catch up with the ticks up to now; now (msc)."""
        now = self._now_msc()
        self._desk.advance(now)
        self._save_trades()
        return now

    def _save_trades(self) -> None:
        """Write the account to ``trade_state`` if it changed since the last write."""
        if self._trade_state is None or self._desk.version == self._saved_version:
            return
        write_private(self._trade_state, orjson.dumps(self._desk.to_state()))
        self._saved_version = self._desk.version

    def _filtered(self, records, symbol, group, ticket, ticket_of) -> list:
        """MT5's ``symbol=`` / ``group=`` / ``ticket=`` selection (at most one of them)."""
        given = [a for a in (symbol, group, ticket) if a is not None]
        if len(given) > 1:
            raise _CallFailed(c.RES_E_INVALID_PARAMS)
        if symbol is not None:
            if not isinstance(symbol, str):
                raise _CallFailed(c.RES_E_INVALID_PARAMS)
            return [r for r in records if r.symbol == symbol]
        if ticket is not None:
            if not _is_int(ticket):
                raise _CallFailed(c.RES_E_INVALID_PARAMS)
            return [r for r in records if ticket_of(r) == ticket]
        return self._in_group(records, group)

    def _in_group(self, records, group) -> list:
        if group is None:
            return list(records)
        if not isinstance(group, str):
            raise _CallFailed(c.RES_E_INVALID_PARAMS)
        names = {entry.spec.name for entry in match_group(self._symbols.values(), group)}
        return [r for r in records if r.symbol in names]

    # --- internals ----------------------------------------------------------------
    def _now_msc(self) -> int:
        return math.floor(self._clock() * 1000)

    def _get(self, symbol: str, missing: int = c.RES_E_FAIL) -> _Symbol:
        if not isinstance(symbol, str):
            raise _CallFailed(c.RES_E_INVALID_PARAMS)
        entry = self._symbols.get(symbol)
        if entry is None:
            raise _CallFailed(missing)
        return entry

    def _tick(self, entry: _Symbol) -> Tick:
        return _tick_record(entry.history.last_tick(self._now_msc()))

    def _symbol_info(self, entry: _Symbol) -> SymbolInfo:
        spec, tick = entry.spec, self._tick(entry)
        session = _session_stats(entry, tick, self._now_msc())
        change = 0.0
        if session["close"] and tick.bid:
            change = round((tick.bid - session["close"]) / session["close"] * 100.0, 4)
        spread = round((tick.ask - tick.bid) / spec.point) if tick.bid else 0
        return SymbolInfo(
            custom=entry.custom, chart_mode=c.SYMBOL_CHART_MODE_BID,
            select=entry.selected, visible=entry.selected, volume=tick.volume,
            time=tick.time, digits=spec.digits, spread=spread, spread_float=True,
            trade_calc_mode=spec.calc_mode, trade_mode=c.SYMBOL_TRADE_MODE_FULL,
            trade_stops_level=spec.stops_level,
            trade_exemode=c.SYMBOL_TRADE_EXECUTION_MARKET,
            swap_mode=c.SYMBOL_SWAP_MODE_POINTS, swap_rollover3days=c.DAY_OF_WEEK_WEDNESDAY,
            filling_mode=3, bid=tick.bid, bidhigh=session["bidhigh"],
            bidlow=session["bidlow"], ask=tick.ask, askhigh=session["askhigh"],
            asklow=session["asklow"], last=tick.last, lasthigh=session["lasthigh"],
            lastlow=session["lastlow"], volume_real=tick.volume_real,
            point=spec.point, trade_tick_value=_tick_value(spec, tick.bid),
            trade_tick_value_profit=_tick_value(spec, tick.bid),
            trade_tick_value_loss=_tick_value(spec, tick.bid), trade_tick_size=spec.point,
            trade_contract_size=spec.contract_size, volume_min=spec.volume_min,
            volume_max=spec.volume_max, volume_step=spec.volume_step,
            swap_long=spec.swap_long, swap_short=spec.swap_short,
            session_volume=session["volume"], session_open=session["open"],
            session_close=session["close"], margin_hedged=spec.contract_size / 2,
            price_change=change, currency_base=spec.currency_base,
            currency_profit=spec.currency_profit, currency_margin=spec.currency_margin,
            description=spec.description, name=spec.name, path=spec.path,
        )  # fmt: skip


class _MarketView:
    """The terminal's market data as the trading desk sees it."""

    def __init__(self, terminal: SimulatedTerminal) -> None:
        self._terminal = terminal

    def spec(self, symbol: str) -> SymbolSpec | None:
        entry = self._terminal._symbols.get(symbol)
        return entry.spec if entry is not None else None

    def tick(self, symbol: str, now_msc: int) -> Tick:
        return _tick_record(self._terminal._symbols[symbol].history.last_tick(now_msc))

    def ticks(self, symbol: str, start_msc: int, end_msc: int) -> np.ndarray:
        return self._terminal._symbols[symbol].history.ticks_range(start_msc, end_msc)


# The module's constants, as attributes: terminal.TIMEFRAME_M1 == mt5.TIMEFRAME_M1.
for _name, _value in c.MODULE_CONSTANTS.items():
    setattr(SimulatedTerminal, _name, _value)


def match_group(symbols, group: str | None) -> list:
    """Entries (with ``.spec.name``/``.spec.path``) matching an MT5 group filter.

    ``group`` is a comma-separated list of masks where ``*`` matches anything;
    a mask starting with ``!`` excludes.  A symbol is returned when it matches
    some inclusion mask (or there are none) and no exclusion mask.  Masks with
    a backslash are matched against the symbol's path (``Forex\\*``).
    """
    symbols = list(symbols)
    if not group or not group.strip():
        return symbols
    include: list[re.Pattern[str]] = []
    exclude: list[re.Pattern[str]] = []
    for mask in (m.strip() for m in group.split(",")):
        if not mask:
            continue
        target = exclude if mask.startswith("!") else include
        target.append(_mask_regex(mask.lstrip("!")))

    def hit(patterns, entry) -> bool:
        return any(p.fullmatch(entry.spec.path if "\\" in p.pattern else entry.spec.name) for p in patterns)

    return [s for s in symbols if (not include or hit(include, s)) and not hit(exclude, s)]


def _mask_regex(mask: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in mask.split("*")), re.IGNORECASE)


def _session_stats(entry: _Symbol, tick: Tick, now_msc: int) -> dict[str, float]:
    """High/low/open of the trading day of the latest tick, and the previous
    day's close, for symbol_info's bidhigh/bidlow/session_* fields."""
    stats = dict.fromkeys(
        ("bidhigh", "bidlow", "askhigh", "asklow", "lasthigh", "lastlow", "open", "close",
         "volume"), 0.0,
    )  # fmt: skip
    if not tick.time:
        return stats
    day = day_index(tick.time)
    history = entry.history
    ticks = history.ticks_range(day_start(day) * 1000, min(now_msc, tick.time_msc))
    if ticks.size:
        trades = ticks["last"][ticks["volume_real"] > 0]
        stats.update(
            bidhigh=float(ticks["bid"].max()), bidlow=float(ticks["bid"].min()),
            askhigh=float(ticks["ask"].max()), asklow=float(ticks["ask"].min()),
            lasthigh=float(trades.max()) if trades.size else 0.0,
            lastlow=float(trades.min()) if trades.size else 0.0,
            open=float(ticks["bid"][0]), volume=float(ticks["volume_real"].sum()),
        )  # fmt: skip
    else:  # bar exports: the latest bar stands in for the session
        bar = history.rates_before(c.TIMEFRAME_D1, tick.time, 1, now_msc)
        if bar.size:
            spread = float(bar["spread"][0]) * entry.spec.point
            stats.update(
                bidhigh=float(bar["high"][0]), bidlow=float(bar["low"][0]),
                askhigh=float(bar["high"][0]) + spread, asklow=float(bar["low"][0]) + spread,
                open=float(bar["open"][0]),
            )  # fmt: skip
    previous = history.rates_before(c.TIMEFRAME_D1, day_start(day) - 1, 1, now_msc)
    if previous.size:
        stats["close"] = float(previous["close"][-1])
    return stats


def _tick_record(raw: np.void | None) -> Tick:
    """A tick row as MT5's Tick; zeros for a symbol without quotes yet (as MT5 reports)."""
    if raw is None:
        return Tick()
    return Tick(
        time=int(raw["time"]), bid=float(raw["bid"]), ask=float(raw["ask"]),
        last=float(raw["last"]), volume=int(raw["volume"]),
        time_msc=int(raw["time_msc"]), flags=int(raw["flags"]),
        volume_real=float(raw["volume_real"]),
    )  # fmt: skip


def _history_filter(date_from, date_to, group, ticket, position):
    """``(time, ticket, position) -> bool`` for history_*_get's three ways of asking:
    a date range (with an optional group), ``ticket=`` or ``position=``; never mixed."""
    if ticket is not None or position is not None:
        if date_from is not None or date_to is not None or group is not None:
            raise _CallFailed(c.RES_E_INVALID_PARAMS)
        if ticket is not None and position is not None:
            raise _CallFailed(c.RES_E_INVALID_PARAMS)
        wanted = ticket if ticket is not None else position
        if not _is_int(wanted):
            raise _CallFailed(c.RES_E_INVALID_PARAMS)
        if ticket is not None:
            return lambda _time, number, _position: number == wanted
        return lambda _time, _number, number: number == wanted
    if date_from is None or date_to is None:
        raise _CallFailed(c.RES_E_INVALID_PARAMS)
    start, end = _seconds(date_from), _seconds(date_to)
    return lambda time_, _number, _position: start <= time_ <= end


def _number(value: object) -> float:
    if _is_int(value) or (isinstance(value, (float, np.floating)) and math.isfinite(value)):
        return float(value)  # type: ignore[arg-type]
    raise _CallFailed(c.RES_E_INVALID_PARAMS)


def _tick_value(spec: SymbolSpec, bid: float) -> float:
    """Value in USD (the account currency) of a one-point move of one lot."""
    value = spec.contract_size * spec.point
    if spec.currency_profit != "USD" and spec.currency_base == "USD" and bid:
        value /= bid  # e.g. USDJPY: profit in JPY, converted at the current rate
    return round(value, 8)


def _is_int(value: object) -> TypeGuard[int | np.integer]:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_timeframe(timeframe: object) -> None:
    if not _is_int(timeframe) or int(timeframe) not in c.TIMEFRAMES:
        raise _CallFailed(c.RES_E_INVALID_PARAMS)


def _check_count(count: object, limit: int | None = MAXBARS) -> int:
    if not _is_int(count) or count <= 0 or (limit is not None and count > limit):
        raise _CallFailed(c.RES_E_INVALID_PARAMS)
    return int(count)


def _check_tick_flags(flags: object) -> None:
    if not _is_int(flags) or flags not in (c.COPY_TICKS_ALL, c.COPY_TICKS_INFO, c.COPY_TICKS_TRADE):
        raise _CallFailed(c.RES_E_INVALID_PARAMS)


def _seconds(value: object) -> int:
    """A date argument as Unix seconds: a datetime (naive = UTC, like the
    terminal's server time here) or a number of seconds; sub-second parts are
    dropped, as MT5 does."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        seconds = math.floor(value.timestamp())
    elif _is_int(value):
        seconds = int(value)
    elif isinstance(value, (float, np.floating)) and math.isfinite(value):
        seconds = math.floor(value)
    else:
        raise _CallFailed(c.RES_E_INVALID_PARAMS)
    if seconds < 0:
        raise _CallFailed(c.RES_E_INVALID_PARAMS)
    return seconds
