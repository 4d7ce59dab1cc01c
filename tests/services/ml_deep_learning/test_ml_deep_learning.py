"""ml-deep-learning in-process on the real broker and PostgreSQL, beside ml-supervised (which owns
the job and registry API): an LSTM job queued at ml-supervised is claimed and trained here,
promoted there, and then predicts through the broker once a window is full; refusals for a
short window and a foreign feature list; the windows survive a restart; ad-hoc window predictions."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from functools import partial

import httpx
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer

from services.ml_deep_learning.service import SERVICE as DEEP
from services.ml_deep_learning.settings import MlDeepLearningSettings
from services.ml_supervised.service import SERVICE as SUPERVISED
from services.ml_supervised.settings import MlSupervisedSettings
from shared import topics
from shared.events import (
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
from shared.ml.kinds import score
from shared.settings import PlatformSettings
from tests.intelligence_support import bearer, mint, new_key, verifier_trusting
from tests.services.ml_supervised.test_ml_supervised import (
    CLIENT_ID,
    CLIENT_SECRET,
    END,
    START,
    Feed,
    _socket,
    bars_app,
    publish,
    token_app,
)
from tests.support import eventually, own_database, serve

STAND_IN = "tests.shared.ml.stand_in:stand_in"
SYMBOL = "GBPUSD"
WINDOW = 6
TRAIN = {
    "name": "lstm-direction",
    "kind": "lstm",
    # Its own symbol: other tests on this session's broker publish EURUSD vectors, which would sit
    # in the EURUSD window (rightly refused there: another feature list).
    "symbols": [SYMBOL],
    "start": START,
    "end": END,
    "horizon_bars": 5,
    "folds": 2,
    "hyperparameters": {"window": WINDOW, "hidden": 8, "epochs": 3, "batch_size": 64},
}


@pytest.fixture(scope="module")
async def mesh(infra_env, tmp_path_factory):
    _, env, session = infra_env
    key = new_key()
    async with own_database(env["DATABASE_URL"], "mldeep") as db:
        platform = PlatformSettings(
            hats_var_dir=tmp_path_factory.mktemp("mldeep-var"),
            hats_port_offset=session.hats_port_offset,
            kafka_bootstrap_servers=session.kafka_servers,
            database_url=db,
        )
        verifier = verifier_trusting(key, platform)

        def token(*scopes: str) -> dict[str, str]:
            return bearer(key, platform, scopes)

        # Both services' own clients (ServiceIdentity) present these, to the stand-in token endpoint.
        identity = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}

        def deep_app():
            settings = MlDeepLearningSettings(feature_set=STAND_IN, job_poll_interval_s=0.2, **identity)
            return DEEP.create_app(platform=platform, settings=settings, overrides=Overrides(token_verifier=verifier))

        feed = Feed(session.kafka_servers, (Prediction, PredictionRefused, ModelLifecycle))
        await feed.consumer.start()
        follower = asyncio.create_task(feed.follow())
        gateway = _socket(platform.port_of("api-gateway"))
        database = _socket(platform.port_of("database-service"))
        async with serve(bars_app(verifier), database), serve(token_app(partial(mint, key, platform)), gateway):
            sup = SUPERVISED.create_app(
                platform=platform,
                settings=MlSupervisedSettings(
                    feature_set=STAND_IN, job_poll_interval_s=0.2, bootstrap_symbols=(), **identity
                ),
                overrides=Overrides(token_verifier=verifier),
            )
            async with sup.router.lifespan_context(sup):
                client = httpx.AsyncClient(transport=httpx.ASGITransport(app=sup), base_url="http://sup", timeout=30)
                async with client as http:
                    yield http, token, feed, deep_app, platform.port_of("ml-deep-learning")
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await feed.consumer.stop()


def vector(features: dict, *, minute: int, feature_set: str = "stand-in-1") -> FeatureVector:
    ts = 1_767_312_000 * 10**9 + minute * 60 * 10**9
    return FeatureVector(
        event_id=feature_vector_id(SYMBOL, Timeframe.M1, ts, feature_set),
        ts_event=ts,
        ts_init=ts,
        symbol=SYMBOL,
        timeframe=Timeframe.M1,
        bar_event_id=uuid.uuid4(),
        feature_set=feature_set,
        features=features,
    )


def features(i: int) -> dict[str, float]:
    close = 1.1 + 0.0003 * np.sin(i)
    return {"close": float(close), "ret_1": float(0.0003 * np.cos(i)), "ret_3": float(0.0005 * np.sin(i / 2))}


async def test_a_sequence_model_trains_here_and_predicts_from_full_windows_through_the_broker(mesh, infra_env):
    http, token, feed, deep_app, deep_port = mesh
    servers = infra_env[2].kafka_servers
    app = deep_app()
    # In-process, and on its port too: ml-supervised forwards sequence predictions there.
    async with app.router.lifespan_context(app), serve(app, _socket(deep_port), lifespan="off"):
        deep = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://deep", timeout=30)
        state = app.runtime.state

        # Queued at ml-supervised (the gateway's /api/v1/models), claimed and trained here.
        r = await http.post("/api/v1/models/train", json=TRAIN, headers=token("admin"))
        assert r.status_code == 202, r.text

        async def done():
            view = (await http.get(r.json()["status_url"], headers=token("market:read"))).json()
            return view if view["state"] in ("done", "failed") else None

        view = await eventually(done, timeout_s=180, interval_s=0.1)
        assert view["state"] == "done" and view["kind"] == "lstm", view
        model_id = uuid.UUID(view["model_id"])
        model = (await http.get(f"/api/v1/models/{model_id}", headers=token("market:read"))).json()
        assert model["kind"] == "lstm" and model["artifact_path"].endswith(".safetensors")
        assert model["hyperparameters"]["window"] == WINDOW and model["metrics"]["final"]["epochs_run"] >= 1

        # Promoted through ml-supervised; this service reloads its champions on the event.
        assert (await http.post(f"/api/v1/models/{model_id}/promote", headers=token("admin"))).status_code == 200
        await eventually(lambda: _loaded(state, model_id), timeout_s=30)

        vectors = [vector(features(i), minute=100 + i) for i in range(WINDOW + 1)]
        await publish(
            servers,
            (SYMBOL.encode(), b'{"not": "a window"}'),  # parked on the dead-letter topic; nothing else stops
            *[(v.partition_key(), encode_event(v)) for v in vectors[:WINDOW]],
        )
        for v in vectors[: WINDOW - 1]:
            refusal = await feed.first(
                lambda e, v=v: isinstance(e, PredictionRefused) and e.feature_vector_id == v.event_id
            )
            assert refusal.reason == "window_incomplete" and refusal.model_id == model_id
        full = vectors[WINDOW - 1]
        prediction = await feed.first(
            lambda e: isinstance(e, Prediction) and e.event_id == prediction_id(model_id, full.event_id)
        )
        # The window is the last WINDOW vectors, oldest first: the model on them gives this number.
        loaded = state.registry.load(await state.registry.get(model_id))
        window = np.array([list(v.features.values()) for v in vectors[:WINDOW]])
        raw = loaded.predict_row(window)
        assert prediction.probability_up == pytest.approx(raw, abs=1e-12)
        assert prediction.score == score("direction", raw, 1.0) and prediction.model_kind == "lstm"

        # The same window ad hoc: here, and through ml-supervised's /api/v1/predict (forwarded).
        body = {"model_id": str(model_id), "window": [v.features for v in vectors[:WINDOW]]}
        r = await deep.post("/api/v1/predict", json=body, headers=token("market:read"))
        assert r.status_code == 200 and r.json()["score"] == prediction.score, r.text
        r = await deep.post("/api/v1/predict", json=body | {"window": body["window"][1:]}, headers=token("market:read"))
        assert r.status_code == 422 and "window" in r.json()["detail"]
        r = await http.post("/api/v1/predict", json=body, headers=token("market:read"))
        assert r.status_code == 200 and r.json()["score"] == prediction.score, r.text
        r = await http.post(
            "/api/v1/predict", json={"name": "lstm-direction", "features": full.features}, headers=token("market:read")
        )
        assert r.status_code == 422 and "window" in r.json()["detail"], r.text
        assert (await http.post("/api/v1/predict", json=body)).status_code == 401

        # A vector of another feature list is refused, never predicted from.
        foreign = vector({"ret_1": 0.0, "close": 1.1, "ret_3": 0.0}, minute=200, feature_set="other-1")
        await publish(servers, (foreign.partition_key(), encode_event(foreign)))
        refusal = await feed.first(
            lambda e: isinstance(e, PredictionRefused) and e.feature_vector_id == foreign.event_id
        )
        assert refusal.reason == "feature_list_mismatch" and "another order" in refusal.detail
        await deep.aclose()

    # A restart: the windows come back from PostgreSQL, so the next bar predicts at once.
    app = deep_app()
    async with app.router.lifespan_context(app):
        # Every vector sent is back, in bar order: the window and the refused foreign one (kept in the
        # series too; this module's broker carries no other vectors of the symbol).
        kept = app.runtime.state.windows.series[(SYMBOL, Timeframe.M1)]
        assert [row.event_id for row in kept] == [v.event_id for v in vectors[:WINDOW]] + [foreign.event_id]
        nxt = vectors[WINDOW]
        await publish(servers, (nxt.partition_key(), encode_event(nxt)))
        after = await feed.first(lambda e: isinstance(e, Prediction) and e.feature_vector_id == nxt.event_id)
        assert after.model_id == model_id


async def _loaded(state, model_id):
    return model_id in state.champions.loaded or None


async def test_the_malformed_vector_was_dead_lettered(mesh, infra_env):
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
                    group = headers.get("x-consumer-group")
                    if group == b"ml-deep-learning" and record.value == b'{"not": "a window"}':
                        found = headers
        assert found is not None and found["x-dlq-reason"] == b"malformed"
    finally:
        await consumer.stop()
