"""The named tuples the ``MetaTrader5`` module returns, with its field names and order.

The real module returns ``SymbolInfo``, ``Tick``, ``TerminalInfo`` and
``AccountInfo`` named tuples; callers use attribute access and ``_asdict()``,
so the field names (and their order, for positional unpacking) are copied
from it.  Values are plain Python ``int``/``float``/``bool``/``str``, never
numpy scalars, as with the real terminal.
"""

from __future__ import annotations

from typing import NamedTuple


class Tick(NamedTuple):
    """Last quote of a symbol (``symbol_info_tick``)."""

    time: int = 0
    bid: float = 0.0
    ask: float = 0.0
    last: float = 0.0
    volume: int = 0
    time_msc: int = 0
    flags: int = 0
    volume_real: float = 0.0


class TerminalInfo(NamedTuple):
    """Terminal state and settings (``terminal_info``)."""

    community_account: bool = False
    community_connection: bool = False
    connected: bool = True
    dlls_allowed: bool = False
    trade_allowed: bool = True
    tradeapi_disabled: bool = False
    email_enabled: bool = False
    ftp_enabled: bool = False
    notifications_enabled: bool = False
    mqid: bool = False
    build: int = 0
    maxbars: int = 100_000
    codepage: int = 0
    ping_last: int = 0
    community_balance: float = 0.0
    retransmission: float = 0.0
    company: str = ""
    name: str = ""
    language: str = "English"
    path: str = ""
    data_path: str = ""
    commondata_path: str = ""


class AccountInfo(NamedTuple):
    """Trading account state (``account_info``)."""

    login: int = 0
    trade_mode: int = 0
    leverage: int = 100
    limit_orders: int = 200
    margin_so_mode: int = 0
    trade_allowed: bool = True
    trade_expert: bool = True
    margin_mode: int = 2
    currency_digits: int = 2
    fifo_close: bool = False
    balance: float = 0.0
    credit: float = 0.0
    profit: float = 0.0
    equity: float = 0.0
    margin: float = 0.0
    margin_free: float = 0.0
    margin_level: float = 0.0
    margin_so_call: float = 50.0
    margin_so_so: float = 30.0
    margin_initial: float = 0.0
    margin_maintenance: float = 0.0
    assets: float = 0.0
    liabilities: float = 0.0
    commission_blocked: float = 0.0
    name: str = ""
    server: str = ""
    currency: str = "USD"
    company: str = ""


class SymbolInfo(NamedTuple):
    """Symbol properties and current market state (``symbol_info``/``symbols_get``)."""

    custom: bool = False
    chart_mode: int = 0
    select: bool = False
    visible: bool = False
    session_deals: int = 0
    session_buy_orders: int = 0
    session_sell_orders: int = 0
    volume: int = 0
    volumehigh: int = 0
    volumelow: int = 0
    time: int = 0
    digits: int = 0
    spread: int = 0
    spread_float: bool = True
    ticks_bookdepth: int = 0
    trade_calc_mode: int = 0
    trade_mode: int = 4
    start_time: int = 0
    expiration_time: int = 0
    trade_stops_level: int = 0
    trade_freeze_level: int = 0
    trade_exemode: int = 2
    swap_mode: int = 1
    swap_rollover3days: int = 3
    margin_hedged_use_leg: bool = False
    expiration_mode: int = 15
    filling_mode: int = 2
    order_mode: int = 127
    order_gtc_mode: int = 0
    option_mode: int = 0
    option_right: int = 0
    bid: float = 0.0
    bidhigh: float = 0.0
    bidlow: float = 0.0
    ask: float = 0.0
    askhigh: float = 0.0
    asklow: float = 0.0
    last: float = 0.0
    lasthigh: float = 0.0
    lastlow: float = 0.0
    volume_real: float = 0.0
    volumehigh_real: float = 0.0
    volumelow_real: float = 0.0
    option_strike: float = 0.0
    point: float = 0.0
    trade_tick_value: float = 0.0
    trade_tick_value_profit: float = 0.0
    trade_tick_value_loss: float = 0.0
    trade_tick_size: float = 0.0
    trade_contract_size: float = 0.0
    trade_accrued_interest: float = 0.0
    trade_face_value: float = 0.0
    trade_liquidity_rate: float = 0.0
    volume_min: float = 0.0
    volume_max: float = 0.0
    volume_step: float = 0.0
    volume_limit: float = 0.0
    swap_long: float = 0.0
    swap_short: float = 0.0
    margin_initial: float = 0.0
    margin_maintenance: float = 0.0
    session_volume: float = 0.0
    session_turnover: float = 0.0
    session_interest: float = 0.0
    session_buy_orders_volume: float = 0.0
    session_sell_orders_volume: float = 0.0
    session_open: float = 0.0
    session_close: float = 0.0
    session_aw: float = 0.0
    session_price_settlement: float = 0.0
    session_price_limit_min: float = 0.0
    session_price_limit_max: float = 0.0
    margin_hedged: float = 0.0
    price_change: float = 0.0
    price_volatility: float = 0.0
    price_theoretical: float = 0.0
    price_greeks_delta: float = 0.0
    price_greeks_theta: float = 0.0
    price_greeks_gamma: float = 0.0
    price_greeks_vega: float = 0.0
    price_greeks_rho: float = 0.0
    price_greeks_omega: float = 0.0
    price_sensitivity: float = 0.0
    basis: str = ""
    category: str = ""
    currency_base: str = ""
    currency_profit: str = ""
    currency_margin: str = ""
    bank: str = ""
    description: str = ""
    exchange: str = ""
    formula: str = ""
    isin: str = ""
    name: str = ""
    page: str = ""
    path: str = ""


# --- trading ----------------------------------------------------------------------
class TradeRequest(NamedTuple):
    """A trade request (MqlTradeRequest), as echoed in ``order_send``/``order_check`` results."""

    action: int = 0
    magic: int = 0
    order: int = 0
    symbol: str = ""
    volume: float = 0.0
    price: float = 0.0
    stoplimit: float = 0.0
    sl: float = 0.0
    tp: float = 0.0
    deviation: int = 0
    type: int = 0
    type_filling: int = 0
    type_time: int = 0
    expiration: int = 0
    comment: str = ""
    position: int = 0
    position_by: int = 0


class OrderSendResult(NamedTuple):
    """The trade server's answer to ``order_send`` (MqlTradeResult)."""

    retcode: int = 0
    deal: int = 0
    order: int = 0
    volume: float = 0.0
    price: float = 0.0
    bid: float = 0.0
    ask: float = 0.0
    comment: str = ""
    request_id: int = 0
    retcode_external: int = 0
    request: TradeRequest = TradeRequest()


class OrderCheckResult(NamedTuple):
    """The account as it would be after a request (``order_check``, MqlTradeCheckResult)."""

    retcode: int = 0
    balance: float = 0.0
    equity: float = 0.0
    profit: float = 0.0
    margin: float = 0.0
    margin_free: float = 0.0
    margin_level: float = 0.0
    comment: str = ""
    request: TradeRequest = TradeRequest()


class TradeOrder(NamedTuple):
    """An order, active (``orders_get``) or historical (``history_orders_get``)."""

    ticket: int = 0
    time_setup: int = 0
    time_setup_msc: int = 0
    time_done: int = 0
    time_done_msc: int = 0
    time_expiration: int = 0
    type: int = 0
    type_time: int = 0
    type_filling: int = 0
    state: int = 0
    magic: int = 0
    position_id: int = 0
    position_by_id: int = 0
    reason: int = 0
    volume_initial: float = 0.0
    volume_current: float = 0.0
    price_open: float = 0.0
    sl: float = 0.0
    tp: float = 0.0
    price_current: float = 0.0
    price_stoplimit: float = 0.0
    symbol: str = ""
    comment: str = ""
    external_id: str = ""


class TradePosition(NamedTuple):
    """An open position (``positions_get``)."""

    ticket: int = 0
    time: int = 0
    time_msc: int = 0
    time_update: int = 0
    time_update_msc: int = 0
    type: int = 0
    magic: int = 0
    identifier: int = 0
    reason: int = 0
    volume: float = 0.0
    price_open: float = 0.0
    sl: float = 0.0
    tp: float = 0.0
    price_current: float = 0.0
    swap: float = 0.0
    profit: float = 0.0
    symbol: str = ""
    comment: str = ""
    external_id: str = ""


class TradeDeal(NamedTuple):
    """An executed deal (``history_deals_get``)."""

    ticket: int = 0
    order: int = 0
    time: int = 0
    time_msc: int = 0
    type: int = 0
    entry: int = 0
    magic: int = 0
    position_id: int = 0
    reason: int = 0
    volume: float = 0.0
    price: float = 0.0
    commission: float = 0.0
    swap: float = 0.0
    profit: float = 0.0
    fee: float = 0.0
    symbol: str = ""
    comment: str = ""
    external_id: str = ""
