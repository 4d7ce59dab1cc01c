"""Builders for the bots' tests: bots, validated signals and feature vectors with deterministic ids."""

from __future__ import annotations

import uuid
from decimal import Decimal

from fastapi import FastAPI
from joserfc.jwk import KeySet, OKPKey

from services.trading_engine.bots.model import Bot, BotConfig, MarketView
from services.trading_engine.bots.routes import current_desk, router
from shared.auth import LocalKeySource, RevokedTokens, TokenVerifier, mint_access_token
from shared.auth.fastapi import install_auth
from shared.events import (
    Contribution,
    FeatureVector,
    Signal,
    Timeframe,
    ValidatedSignal,
    bar_event_id,
    feature_vector_id,
    signal_id,
)
from shared.kit.problems import install_problem_handlers

#: 2026-01-05 00:00 UTC (a Monday), ns: a bar-aligned origin for inputs.
T0 = 1_767_571_200_000_000_000
MINUTE = 60_000_000_000


def bot(strategy: str = "signals", symbol: str = "EURUSD", state: str = "running", **config) -> Bot:
    return Bot(
        bot_id=uuid.uuid5(uuid.NAMESPACE_OID, f"bot|{strategy}|{symbol}"),
        tenant="acme",
        account_id="paper-1",
        symbol=symbol,
        strategy=strategy,  # type: ignore[arg-type]
        config=BotConfig(**config),
        state=state,  # type: ignore[arg-type]
        created_ns=T0,
        updated_ns=T0,
    )


def validated(
    action: str,
    minute: int,
    *,
    symbol: str = "EURUSD",
    confidence: float = 0.7,
    strength: float = 0.6,
    timeframe: Timeframe = Timeframe.M1,
    strategy: str = "ensemble-1",
) -> ValidatedSignal:
    ts = T0 + minute * MINUTE
    direction = {"enter_long": "long", "exit_short": "long", "enter_short": "short", "exit_long": "short"}.get(
        action, "flat"
    )
    signal = Signal(
        event_id=signal_id(symbol, timeframe, ts, strategy),
        ts_event=ts,
        ts_init=ts,
        symbol=symbol,
        timeframe=timeframe,
        feature_vector_id=feature_vector_id(symbol, timeframe, ts, "core-1"),
        direction=direction,  # type: ignore[arg-type]
        action=action,  # type: ignore[arg-type]
        strength=strength,
        confidence=confidence,
        strategy=strategy,
        contributions=[
            Contribution(
                model_id=uuid.UUID(int=7),
                model_name="xgb-direction",
                model_version=3,
                model_kind="xgboost",
                score=0.5,
                weight=1.0,
            )
        ],
    )
    return ValidatedSignal(event_id=uuid.uuid5(signal.event_id, "validated"), ts_event=ts, ts_init=ts, signal=signal)


def vector(
    minute: int,
    rsi: float | None,
    *,
    symbol: str = "EURUSD",
    close: float = 1.1,
    atr: float | None = 0.001,
    ema_50: float | None = None,
    timeframe: Timeframe = Timeframe.M1,
) -> FeatureVector:
    ts = T0 + minute * MINUTE
    return FeatureVector(
        event_id=feature_vector_id(symbol, timeframe, ts, "core-1"),
        ts_event=ts,
        ts_init=ts,
        symbol=symbol,
        timeframe=timeframe,
        bar_event_id=bar_event_id(symbol, timeframe, ts),
        feature_set="core-1",
        features={"close": close, "rsi_14": rsi, "atr_14": atr, "ema_50": ema_50},
    )


def market(bid: str | None = "1.10000", ask: str | None = "1.10010", equity: str = "10000", **more) -> MarketView:
    return MarketView(
        bid=None if bid is None else Decimal(bid),
        ask=None if ask is None else Decimal(ask),
        equity=Decimal(equity),
        **more,
    )


ISSUER, AUDIENCE = "http://127.0.0.1:8000", "hats-api"
KEY = OKPKey.generate_key("Ed25519", parameters={"kid": "bots"})


def token(tenant: str, *scopes: str) -> dict[str, str]:
    """The Authorization header of a token of ``tenant`` with ``scopes`` (signed by ``KEY``)."""
    access = mint_access_token(
        KEY,
        issuer=ISSUER,
        audience=AUDIENCE,
        subject=f"client:{tenant}-desk",
        client_id=f"{tenant}-desk",
        tenant=tenant,
        scopes=scopes,
        # Minted when the module is collected, long before a slow full run reaches it.
        ttl_s=6 * 3600,
    )[0]
    return {"Authorization": f"Bearer {access}"}


def bots_api(desk: object) -> FastAPI:
    """An app serving the bots' router with ``desk`` as the engine's desk, verifying ``KEY``'s tokens."""
    app = FastAPI()
    install_problem_handlers(app)
    install_auth(app, TokenVerifier(ISSUER, AUDIENCE, LocalKeySource(lambda: KeySet([KEY])), revoked=RevokedTokens()))
    app.include_router(router)
    app.dependency_overrides[current_desk] = lambda: desk
    return app
