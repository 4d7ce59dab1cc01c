"""The JSON the routes answer: a scope's PnL, trade statistics, risk/return and, for models, hit
rate and calibration. Money as decimal strings, statistics as numbers (``null`` when undefined)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from services.performance_analytics.ledger import AccountLedger, ClosedResult, Quote, Scope, ScopePnL
from services.performance_analytics.metrics import RiskReturn, risk_return, trade_stats
from services.performance_analytics.store import Curve

#: Width of a calibration bucket of signal confidence.
CALIBRATION_STEP = Decimal("0.1")


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat().replace("+00:00", "Z")


def money(value: Decimal) -> str:
    """A decimal string to 8 places without trailing zeros or an exponent (``100``, ``7.5``)."""
    return format(value.quantize(Decimal("0.00000001")).normalize(), "f") if value else "0"


def pnl_json(pnl: ScopePnL, capital: Decimal) -> dict[str, Any]:
    return {
        "equity": money(capital + pnl.total),
        "pnl": {
            "realised": money(pnl.realised),
            "commission": money(pnl.commission),
            "realised_net": money(pnl.realised - pnl.commission),
            "unrealised": money(pnl.unrealised),
            "total": money(pnl.total),
        },
        "exposure": {"gross": money(pnl.gross_exposure), "net": money(pnl.net_exposure)},
        "open_trades": pnl.open_trades,
    }


def trades_json(results: Sequence[ClosedResult]) -> dict[str, Any]:
    s = trade_stats([float(r.net) for r in results])
    return {
        "count": s.trades,
        "wins": s.wins,
        "losses": s.losses,
        "win_rate": s.win_rate,
        "profit_factor": s.profit_factor,
        "average_win": s.average_win,
        "average_loss": s.average_loss,
        "gross_profit": s.gross_profit,
        "gross_loss": s.gross_loss,
    }


def risk_json(risk: RiskReturn) -> dict[str, Any]:
    d = risk.drawdown
    return {
        "returns_period_s": risk.period_s,
        "annualisation": risk.annualisation,
        "returns": risk.returns,
        "sharpe": risk.sharpe,
        "sortino": risk.sortino,
        "max_drawdown": d.max_fraction,
        "max_drawdown_amount": d.max_amount,
        "max_drawdown_peak": iso(d.peak_ns),
        "max_drawdown_trough": iso(d.trough_ns),
        "longest_drawdown_s": d.longest_ns / 1e9,
        "underwater": d.underwater,
    }


def live_curve(curve: Curve, equity_now: Decimal, now_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """The stored curve with the live point appended (ns, equity)."""
    ts = np.append(curve.ts_ms * 1_000_000, now_ns).astype(np.int64)
    return ts, np.append(curve.equity, float(equity_now))


def calibration(results: Sequence[ClosedResult]) -> dict[str, Any]:
    """Trades by the confidence of their signal, in buckets of 0.1: how often each bucket won."""
    buckets: dict[int, list[ClosedResult]] = {}
    unknown = 0
    for r in results:
        if r.confidence is None:
            unknown += 1
            continue
        index = min(int(Decimal(repr(r.confidence)) / CALIBRATION_STEP), 9)
        buckets.setdefault(index, []).append(r)
    rows = []
    for index in sorted(buckets):
        members = buckets[index]
        rows.append(
            {
                "from": float(index * CALIBRATION_STEP),
                "to": float((index + 1) * CALIBRATION_STEP),
                "trades": len(members),
                "mean_confidence": sum(m.confidence or 0.0 for m in members) / len(members),
                "hit_rate": sum(m.won for m in members) / len(members),
            }
        )
    return {"buckets": rows, "without_confidence": unknown}


def model_json(results: Sequence[ClosedResult]) -> dict[str, Any]:
    hits = sum(r.won for r in results)
    return {
        "hit_rate": hits / len(results) if results else None,
        "hits": hits,
        "calibration": calibration(results),
    }


def scope_report(
    ledger: AccountLedger,
    scope: Scope,
    pnl: ScopePnL,
    curve: Curve,
    capital: Decimal,
    now_ns: int,
    period_s: float,
) -> dict[str, Any]:
    """Everything about one scope of one account."""
    results = ledger.closed(scope)
    ts, equity = live_curve(curve, capital + pnl.total, now_ns)
    report: dict[str, Any] = {
        "scope": {"kind": scope[0], "name": scope[1]},
        "capital": money(capital),
        **pnl_json(pnl, capital),
        "trades": trades_json(results),
        "risk": risk_json(risk_return(ts, equity, period_s)),
    }
    if scope[0] == "model":
        report["model"] = model_json(results)
    return report


def positions_json(ledger: AccountLedger, marks: dict[str, Quote]) -> list[dict[str, Any]]:
    out = []
    for symbol, p in sorted(ledger.positions.items()):
        if p.quantity == 0:
            continue
        quote = marks.get(symbol)
        bid, ask = (quote.bid, quote.ask) if quote else (None, None)
        out.append(
            {
                "symbol": symbol,
                "quantity": money(p.quantity),
                "average_price": money(p.average_price),
                "mark": money((bid if p.quantity > 0 else ask) or p.last_fill_price),
                "unrealised": money(p.unrealised(bid, ask)),
                "opened_at": iso(p.trade.opened_ns) if p.trade else None,
                "strategy": p.trade.strategy if p.trade else None,
            }
        )
    return out
