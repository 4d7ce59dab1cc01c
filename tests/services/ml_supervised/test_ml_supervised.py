"""ml-supervised in-process on the real broker and PostgreSQL, its bars from a stand-in
database-service over HTTP: the job API, the registry API, promotion (admin only), online
inference through the broker (predictions, refusals, dead letters), drift and expiry flags."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import time
import uuid
from functools import partial

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI, HTTPException, Request

from services.ml_supervised.service import SERVICE
from services.ml_supervised.settings import MlSupervisedSettings
from shared import topics
from shared.auth import TokenVerifier
from shared.events import (
    FeatureDrift,
    FeatureVector,
    ModelLifecycle,
    Prediction,
    PredictionRefused,
    Timeframe,
    encode_event,
    feature_vector_id,
    prediction_id,
)
from shared.kit.service import Overrides
from shared.settings import PlatformSettings
from tests.intelligence_support import bearer, mint, new_key, verifier_trusting
from tests.shared.ml.stand_in import StandInFeatureSet, random_walk
from tests.support import eventually, own_database, serve

START = "2026-01-01T00:00:00Z"
END = "2026-01-02T00:00:00Z"


#: The service's own OAuth2 client (ServiceIdentity), as an operator would set it.
CLIENT_ID, CLIENT_SECRET = "svc-ml-supervised-test", "s" * 40


def bars_app(verifier: TokenVerifier) -> FastAPI:
    """database-service's ``GET /api/v1/market/bars`` over generated bars (paged like the real one),
    serving only a caller whose token verifies and holds ``market:read``, as the real one does."""
    app = FastAPI()
    series = {s: random_walk(1500, seed=sum(map(ord, s)), symbol=s) for s in ("EURUSD", "GBPUSD")}

    @app.get("/api/v1/market/bars")
    async def bars(request: Request, symbol: str, timeframe: str, start: str, end: str, limit: int):
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or "market:read" not in (await verifier.verify(value)).scopes:
            raise HTTPException(401)
        s = series[symbol]
        lo = int(dt.datetime.fromisoformat(start).timestamp()) * 10**9
        hi = int(dt.datetime.fromisoformat(end).timestamp()) * 10**9
        rows = [
            {
                "ts": dt.datetime.fromtimestamp(int(t) / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "open": float(o),
                "high": float(h),
                "low": float(lo_),
                "close": float(c),
                "volume": int(v),
                "real_volume": 0.0,
            }
            for t, o, h, lo_, c, v in zip(s.ts, s.open, s.high, s.low, s.close, s.volume, strict=True)
            if lo <= t <= hi
        ]
        return rows[:limit]

    return app


def token_app(mint_token) -> FastAPI:
    """The gateway's ``POST /oauth2/token`` for the service's client (client credentials, HTTP Basic)."""
    app = FastAPI()

    @app.post("/oauth2/token")
    async def issue(request: Request):
        form = await request.form()
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if form.get("grant_type") != "client_credentials" or request.headers.get("authorization") != expected:
            raise HTTPException(401)
        return {"access_token": mint_token(("market:read",)), "token_type": "Bearer", "expires_in": 600}

    return app


class Feed:
    """Every event of some topics on the session's broker, from the earliest offset."""

    def __init__(self, servers: str, kinds) -> None:
        self.kinds = {k.TOPIC: k for k in kinds}
        self.events: list = []
        self.consumer = AIOKafkaConsumer(*self.kinds, bootstrap_servers=servers, auto_offset_reset="earliest")

    async def follow(self) -> None:
        async for record in self.consumer:
            self.events.append(self.kinds[record.topic].model_validate_json(record.value))

    async def first(self, predicate, timeout_s: float = 90.0):  # a loaded 2-core machine trains slowly
        return await eventually(lambda: _first(self.events, predicate), timeout_s=timeout_s)


async def _first(events, predicate):
    return next((e for e in events if predicate(e)), None)


@pytest.fixture(scope="module")
async def ml(infra_env, tmp_path_factory):
    # These tests train and promote themselves; the cold start has its own test (test_cold_start.py).
    _, env, _ = infra_env
    async with (
        own_database(env["DATABASE_URL"], "mlsup") as db,
        running_ml(infra_env, tmp_path_factory, db, time.time(), bootstrap_symbols=()) as running,
    ):
        yield running


@contextlib.asynccontextmanager
async def running_ml(infra_env, tmp_path_factory, db: str, now_s: float, **settings_given):
    """ml-supervised in-process (on the database at ``db``, its clock at ``now_s``), with stand-ins
    for database-service's bars and the gateway's token endpoint on their ports, and a feed of what
    it publishes: yields ``(http, token, feed, app, now)``."""
    _, _, session = infra_env
    key = new_key()
    now = [now_s]
    platform = PlatformSettings(
        hats_var_dir=tmp_path_factory.mktemp("ml-var"),
        hats_port_offset=session.hats_port_offset,
        kafka_bootstrap_servers=session.kafka_servers,
        database_url=db,
    )
    verifier = verifier_trusting(key, platform)

    def token(*scopes: str) -> dict[str, str]:
        return bearer(key, platform, scopes)

    settings = MlSupervisedSettings(
        feature_set="tests.shared.ml.stand_in:stand_in",
        job_poll_interval_s=0.2,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        **settings_given,
    )
    port = platform.port_of("database-service")
    feed = Feed(session.kafka_servers, (Prediction, PredictionRefused, ModelLifecycle))
    await feed.consumer.start()
    follower = asyncio.create_task(feed.follow())
    gateway = _socket(platform.port_of("api-gateway"))
    async with serve(bars_app(verifier), _socket(port)), serve(token_app(partial(mint, key, platform)), gateway):
        app = SERVICE.create_app(
            platform=platform,
            settings=settings,
            overrides=Overrides(token_verifier=verifier, wall_clock=lambda: now[0]),
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ml", timeout=30) as http:
                yield http, token, feed, app, now
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    await feed.consumer.stop()


def _socket(port: int):
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


TRAIN = {
    "name": "xgb-direction",
    "kind": "xgboost",
    "symbols": ["EURUSD"],
    "start": START,
    "end": END,
    "horizon_bars": 5,
    "folds": 3,
    "hyperparameters": {"n_estimators": 25},
}


async def trained(http, token, body=TRAIN) -> dict:
    r = await http.post("/api/v1/models/train", json=body, headers=token("admin"))
    assert r.status_code == 202, r.text
    job_url = r.json()["status_url"]
    stages = set()

    async def done():
        view = (await http.get(job_url, headers=token("market:read"))).json()
        stages.add(view["stage"])
        return view if view["state"] in ("done", "failed") else None

    view = await eventually(done, timeout_s=120, interval_s=0.02)
    assert view["state"] == "done", view
    assert view["elapsed_s"] > 0 and view["percent"] == 100
    return view | {"stages": stages}


async def publish(servers: str, *payloads: tuple[bytes, bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        for key, value in payloads:
            await producer.send_and_wait(topics.FEATURES, value, key=key)
    finally:
        await producer.stop()


def vector(features: dict, *, minute: int, feature_set: str = "stand-in-1") -> FeatureVector:
    ts = 1_767_312_000 * 10**9 + minute * 60 * 10**9
    return FeatureVector(
        event_id=feature_vector_id("EURUSD", Timeframe.M1, ts, feature_set),
        ts_event=ts,
        ts_init=ts,
        symbol="EURUSD",
        timeframe=Timeframe.M1,
        bar_event_id=uuid.uuid4(),
        feature_set=feature_set,
        features=features,
    )


async def test_training_registry_promotion_and_inference_through_the_broker(ml, infra_env):
    http, token, feed, app, now = ml
    servers = infra_env[2].kafka_servers
    # Training is admin-only; reads need market:read.
    assert (await http.post("/api/v1/models/train", json=TRAIN)).status_code == 401
    assert (await http.post("/api/v1/models/train", json=TRAIN, headers=token("market:read"))).status_code == 403
    view = await trained(http, token)
    assert any(s.startswith("training fold") for s in view["stages"]), view["stages"]
    model_id = view["model_id"]
    model = (await http.get(f"/api/v1/models/{model_id}", headers=token("market:read"))).json()
    assert model["status"] == "candidate" and model["features"] == list(StandInFeatureSet.names)
    assert model["artifact_sha256"] and model["data_fingerprint"] and model["metrics"]["aggregate"]
    listed = (await http.get("/api/v1/models", params={"name": "xgb-direction"}, headers=token("market:read"))).json()
    assert [m["id"] for m in listed] == [model_id]
    await feed.first(
        lambda e: isinstance(e, ModelLifecycle) and str(e.model_id) == model_id and e.action == "registered"
    )

    # Promotion: admin only; announced; the champion predicts from vectors on the broker.
    promote = f"/api/v1/models/{model_id}/promote"
    assert (await http.post(promote, headers=token("market:read"))).status_code == 403
    r = await http.post(promote, headers=token("admin"))
    assert r.status_code == 200 and r.json()["status"] == "champion"
    assert r.json()["promoted_by"] == "client:intelligence-tests"
    await feed.first(lambda e: isinstance(e, ModelLifecycle) and str(e.model_id) == model_id and e.action == "promoted")

    good = vector({"close": 1.1, "ret_1": 0.0004, "ret_3": 0.001}, minute=1)
    reordered = vector({"ret_1": 0.0004, "close": 1.1, "ret_3": 0.001}, minute=2, feature_set="other-1")
    missing = vector({"close": 1.1, "ret_1": None, "ret_3": 0.001}, minute=3)
    renamed = vector({"close": 1.1, "ret_1": 0.0004, "rsi_14": 50.0}, minute=4, feature_set="other-2")
    await publish(
        servers,
        *[(v.partition_key(), encode_event(v)) for v in (good, reordered, missing)],
        (b"EURUSD", b'{"not": "a vector"}'),
        (renamed.partition_key(), encode_event(renamed)),
    )
    mid = uuid.UUID(model_id)
    prediction = await feed.first(
        lambda e: isinstance(e, Prediction) and e.event_id == prediction_id(mid, good.event_id)
    )
    assert prediction.model_version == 1 and prediction.feature_vector_id == good.event_id
    assert 0 <= prediction.probability_up <= 1 and prediction.score == pytest.approx(2 * prediction.probability_up - 1)
    for v, reason, words in (
        (reordered, "feature_list_mismatch", "another order"),
        (missing, "features_missing", "ret_1"),
        (renamed, "feature_list_mismatch", "rsi_14"),
    ):
        refusal = await feed.first(
            lambda e, v=v: isinstance(e, PredictionRefused) and e.feature_vector_id == v.event_id
        )
        assert refusal.reason == reason and words in refusal.detail, refusal
        assert not [e for e in feed.events if isinstance(e, Prediction) and e.feature_vector_id == v.event_id]

    # The ad-hoc endpoint gives the same number as the broker path.
    r = await http.post(
        "/api/v1/predict", json={"name": "xgb-direction", "features": good.features}, headers=token("market:read")
    )
    assert r.status_code == 200 and r.json()["score"] == prediction.score
    r = await http.post(
        "/api/v1/predict", json={"model_id": model_id, "features": reordered.features}, headers=token("market:read")
    )
    assert r.status_code == 422 and r.json()["reason"] == "feature_list_mismatch"

    # Expiry: the periodic check flags a champion past expires_at (clock moved past it), once;
    # it stays champion and keeps predicting.
    state = app.runtime.state
    wall = now[0]
    now[0] = dt.datetime.fromisoformat(model["expires_at"]).timestamp() + 3600
    assert [m.id for m in await state.lifecycle.flag_expired()] == [mid]
    assert await state.lifecycle.flag_expired() == []
    now[0] = wall
    expired = await feed.first(lambda e: isinstance(e, ModelLifecycle) and e.model_id == mid and e.action == "flagged")
    assert expired.reason == "expired" and expired.status == "champion"

    # A second version replaces the champion; the first is retired and cannot come back.
    r = await http.post(
        f"/api/v1/models/{model_id}/retrain", json={"end": "2026-01-02T01:00:00Z"}, headers=token("admin")
    )
    assert r.status_code == 202
    second = await eventually(lambda: _done(http, r.json()["status_url"], token), timeout_s=120, interval_s=0.1)
    new = (await http.get(f"/api/v1/models/{second['model_id']}", headers=token("market:read"))).json()
    assert new["version"] == 2 and new["train_end"] > model["train_end"]
    assert (await http.post(f"/api/v1/models/{new['id']}/promote", headers=token("admin"))).status_code == 200
    assert (await http.get(f"/api/v1/models/{model_id}", headers=token("market:read"))).json()["status"] == "retired"
    r = await http.post(promote, headers=token("admin"))
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    await feed.first(lambda e: isinstance(e, ModelLifecycle) and str(e.model_id) == model_id and e.action == "retired")

    # Drift from pattern-validator flags the model once (a redelivery changes nothing).
    drift = FeatureDrift(
        event_id=uuid.uuid4(),
        ts_event=1,
        ts_init=1,
        symbol="EURUSD",
        timeframe=Timeframe.M1,
        model_id=uuid.UUID(new["id"]),
        model_name=new["name"],
        model_version=2,
        threshold=0.25,
        psi={"close": 0.9, "ret_1": 0.01, "ret_3": 0.02},
        drifted=["close"],
        window_bars=500,
    )
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    for _ in range(2):
        await producer.send_and_wait(topics.FEATURE_DRIFT, encode_event(drift), key=drift.partition_key())
    await producer.stop()
    flagged = await feed.first(
        lambda e: isinstance(e, ModelLifecycle) and e.model_id == drift.model_id and e.action == "flagged"
    )
    assert flagged.reason == "drift" and flagged.status == "champion" and flagged.details["drifted"] == "close"
    shown = (await http.get(f"/api/v1/models/{new['id']}", headers=token("market:read"))).json()
    assert shown["flag_reason"] == "drift" and shown["status"] == "champion"
    await asyncio.sleep(1)
    flags = [e for e in feed.events if isinstance(e, ModelLifecycle) and e.action == "flagged"]
    # Two drift events, one flag; other models of the module may meanwhile be flagged expired by the
    # periodic check (its timing depends on how long the module has run).
    assert [e.reason for e in flags if e.model_id == drift.model_id] == ["drift"]


async def _done(http, url, token):
    view = (await http.get(url, headers=token("market:read"))).json()
    return view if view["state"] == "done" else None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"horizon_bars": 0}, "horizon_bars"),
        ({"kind": "svm"}, "kind"),
        ({"kind": "lstm", "hyperparameters": {"window": 1}}, "hyperparameters.window"),
        ({"hyperparameters": {"max_depth": 99}}, "hyperparameters.max_depth"),
        ({"hyperparameters": {"pickle": 1}}, "hyperparameters.pickle"),
        ({"symbols": []}, "symbols"),
        ({"end": "2025-01-01T00:00:00Z"}, "end must be after start"),
        ({"labelling": {"method": "magic"}}, "labelling.method"),
    ],
)
async def test_a_bad_spec_is_a_422_naming_the_field(ml, change, field):
    http, token, *_ = ml
    r = await http.post("/api/v1/models/train", json=TRAIN | change, headers=token("admin"))
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert field in r.json()["detail"], r.json()


async def test_unknown_ids_are_404(ml):
    http, token, *_ = ml
    missing = uuid.uuid4()
    for method, path in (
        ("GET", f"/api/v1/models/{missing}"),
        ("GET", f"/api/v1/models/jobs/{missing}"),
        ("POST", f"/api/v1/models/{missing}/promote"),
        ("POST", f"/api/v1/models/{missing}/retrain"),
    ):
        r = await http.request(method, path, headers=token("admin", "market:read"))
        assert r.status_code == 404, (path, r.text)
    r = await http.post(
        "/api/v1/predict", json={"model_id": str(missing), "features": {}}, headers=token("market:read")
    )
    assert r.status_code == 404


async def test_the_malformed_vector_was_dead_lettered(ml, infra_env):
    # Published by the first test; the consumer group parks it with its reason and goes on.
    consumer = AIOKafkaConsumer(
        topics.DEAD_LETTERS, bootstrap_servers=infra_env[2].kafka_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        found = None
        deadline = time.monotonic() + 20
        while found is None and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    headers = dict(record.headers)
                    if headers.get("x-consumer-group") == b"ml-supervised" and record.value == b'{"not": "a vector"}':
                        found = headers
        assert found is not None and found["x-dlq-reason"] == b"malformed"
    finally:
        await consumer.stop()
