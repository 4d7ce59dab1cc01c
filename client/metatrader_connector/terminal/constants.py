"""Constants of the ``MetaTrader5`` Python module, with MetaQuotes' own values.

Code written as ``import MetaTrader5 as mt5; mt5.TIMEFRAME_H1`` must see the
same numbers from the simulated terminal, so every value here is copied from
the official module (and its ``ENUM_*`` definitions), not invented.
"""

from __future__ import annotations

import numpy as np

# --- timeframes (ENUM_TIMEFRAMES) -------------------------------------------
# Minute timeframes are the number of minutes; hour timeframes set bit 14
# (0x4000) plus the number of hours; W1 and MN1 use bits 15 and 14|15.
TIMEFRAME_M1 = 1
TIMEFRAME_M2 = 2
TIMEFRAME_M3 = 3
TIMEFRAME_M4 = 4
TIMEFRAME_M5 = 5
TIMEFRAME_M6 = 6
TIMEFRAME_M10 = 10
TIMEFRAME_M12 = 12
TIMEFRAME_M15 = 15
TIMEFRAME_M20 = 20
TIMEFRAME_M30 = 30
TIMEFRAME_H1 = 0x4000 | 1  # 16385
TIMEFRAME_H2 = 0x4000 | 2  # 16386
TIMEFRAME_H3 = 0x4000 | 3  # 16387
TIMEFRAME_H4 = 0x4000 | 4  # 16388
TIMEFRAME_H6 = 0x4000 | 6  # 16390
TIMEFRAME_H8 = 0x4000 | 8  # 16392
TIMEFRAME_H12 = 0x4000 | 12  # 16396
TIMEFRAME_D1 = 0x4000 | 24  # 16408
TIMEFRAME_W1 = 0x8000 | 1  # 32769
TIMEFRAME_MN1 = 0x4000 | 0x8000 | 1  # 49153

# --- copy_ticks_* flags (COPY_TICKS) ----------------------------------------
COPY_TICKS_ALL = -1
COPY_TICKS_INFO = 1
COPY_TICKS_TRADE = 2

# --- tick flags (TICK_FLAG) -------------------------------------------------
TICK_FLAG_BID = 0x02
TICK_FLAG_ASK = 0x04
TICK_FLAG_LAST = 0x08
TICK_FLAG_VOLUME = 0x10
TICK_FLAG_BUY = 0x20
TICK_FLAG_SELL = 0x40

# --- last_error() codes (ENUM_ERROR_CODE) -----------------------------------
RES_S_OK = 1
RES_E_FAIL = -1
RES_E_INVALID_PARAMS = -2
RES_E_NO_MEMORY = -3
RES_E_NOT_FOUND = -4
RES_E_INVALID_VERSION = -5
RES_E_AUTH_FAILED = -6
RES_E_UNSUPPORTED = -7
RES_E_AUTO_TRADING_DISABLED = -8
RES_E_INTERNAL_FAIL = -10000
RES_E_INTERNAL_FAIL_SEND = -10001
RES_E_INTERNAL_FAIL_RECEIVE = -10002
RES_E_INTERNAL_FAIL_INIT = -10003
# The official docs' table prints -10003 here by mistake; the enum (and what
# the terminal actually returns, "No IPC connection") is -10004.
RES_E_INTERNAL_FAIL_CONNECT = -10004
RES_E_INTERNAL_FAIL_TIMEOUT = -10005
# Not a name the real module exports: a readable alias for the code every call
# made before initialize() (or after shutdown()) fails with.
RES_E_NO_CONNECTION = RES_E_INTERNAL_FAIL_CONNECT

# The message half of last_error(), worded as the real terminal words it.
ERROR_MESSAGES: dict[int, str] = {
    RES_S_OK: "Success",
    RES_E_FAIL: "Terminal: Call failed",
    RES_E_INVALID_PARAMS: "Terminal: Invalid params",
    RES_E_NO_MEMORY: "Terminal: No memory",
    RES_E_NOT_FOUND: "Terminal: Not found",
    RES_E_INVALID_VERSION: "Terminal: Invalid version",
    RES_E_AUTH_FAILED: "Terminal: Authorization failed",
    RES_E_UNSUPPORTED: "Terminal: Unsupported method",
    RES_E_AUTO_TRADING_DISABLED: "Terminal: Auto-trading disabled",
    RES_E_INTERNAL_FAIL: "Internal IPC general error",
    RES_E_INTERNAL_FAIL_SEND: "IPC send failed",
    RES_E_INTERNAL_FAIL_RECEIVE: "IPC recv failed",
    RES_E_INTERNAL_FAIL_INIT: "IPC initialize failed",
    RES_E_INTERNAL_FAIL_CONNECT: "No IPC connection",
    RES_E_INTERNAL_FAIL_TIMEOUT: "IPC timeout",
}

# --- enums used by the info records -----------------------------------------
ACCOUNT_TRADE_MODE_DEMO = 0
ACCOUNT_TRADE_MODE_CONTEST = 1
ACCOUNT_TRADE_MODE_REAL = 2

ACCOUNT_STOPOUT_MODE_PERCENT = 0
ACCOUNT_STOPOUT_MODE_MONEY = 1

ACCOUNT_MARGIN_MODE_RETAIL_NETTING = 0
ACCOUNT_MARGIN_MODE_EXCHANGE = 1
ACCOUNT_MARGIN_MODE_RETAIL_HEDGING = 2

SYMBOL_CHART_MODE_BID = 0
SYMBOL_CHART_MODE_LAST = 1

SYMBOL_CALC_MODE_FOREX = 0
SYMBOL_CALC_MODE_FUTURES = 1
SYMBOL_CALC_MODE_CFD = 2
SYMBOL_CALC_MODE_CFDINDEX = 3
SYMBOL_CALC_MODE_CFDLEVERAGE = 4
SYMBOL_CALC_MODE_FOREX_NO_LEVERAGE = 5

SYMBOL_TRADE_MODE_DISABLED = 0
SYMBOL_TRADE_MODE_LONGONLY = 1
SYMBOL_TRADE_MODE_SHORTONLY = 2
SYMBOL_TRADE_MODE_CLOSEONLY = 3
SYMBOL_TRADE_MODE_FULL = 4

SYMBOL_TRADE_EXECUTION_REQUEST = 0
SYMBOL_TRADE_EXECUTION_INSTANT = 1
SYMBOL_TRADE_EXECUTION_MARKET = 2
SYMBOL_TRADE_EXECUTION_EXCHANGE = 3

SYMBOL_SWAP_MODE_DISABLED = 0
SYMBOL_SWAP_MODE_POINTS = 1

DAY_OF_WEEK_SUNDAY = 0
DAY_OF_WEEK_MONDAY = 1
DAY_OF_WEEK_TUESDAY = 2
DAY_OF_WEEK_WEDNESDAY = 3
DAY_OF_WEEK_THURSDAY = 4
DAY_OF_WEEK_FRIDAY = 5
DAY_OF_WEEK_SATURDAY = 6

# --- numpy record layouts returned by copy_rates_* and copy_ticks_* ---------
RATES_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("tick_volume", "<u8"),
        ("spread", "<i4"),
        ("real_volume", "<u8"),
    ]
)
TICKS_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("bid", "<f8"),
        ("ask", "<f8"),
        ("last", "<f8"),
        ("volume", "<u8"),
        ("time_msc", "<i8"),
        ("flags", "<u4"),
        ("volume_real", "<f8"),
    ]
)

TIMEFRAMES: tuple[int, ...] = (
    TIMEFRAME_M1, TIMEFRAME_M2, TIMEFRAME_M3, TIMEFRAME_M4, TIMEFRAME_M5,
    TIMEFRAME_M6, TIMEFRAME_M10, TIMEFRAME_M12, TIMEFRAME_M15, TIMEFRAME_M20,
    TIMEFRAME_M30, TIMEFRAME_H1, TIMEFRAME_H2, TIMEFRAME_H3, TIMEFRAME_H4,
    TIMEFRAME_H6, TIMEFRAME_H8, TIMEFRAME_H12, TIMEFRAME_D1, TIMEFRAME_W1,
    TIMEFRAME_MN1,
)  # fmt: skip

# Every public upper-case name above: what SimulatedTerminal mirrors as
# attributes so that ``terminal.TIMEFRAME_M1`` works like ``mt5.TIMEFRAME_M1``.
MODULE_CONSTANTS: dict[str, object] = {
    _name: _value
    for _name, _value in dict(globals()).items()
    if _name.isupper() and not _name.startswith("_") and isinstance(_value, int)
}
