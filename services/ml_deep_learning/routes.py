"""ml-deep-learning's HTTP API: ``POST /api/v1/predict`` for the sequence models (one window).

The gateway routes ``/api/v1/predict`` and ``/api/v1/models`` to ml-supervised, which serves the
shared registry and the job API for every kind and forwards a sequence model's ad-hoc prediction
here (with the caller's token). Training jobs of ``lstm``/``transformer`` are queued there and
claimed by this service's job runner.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from services.ml_deep_learning.inference import predict_window, window_of
from services.ml_deep_learning.state import MlDeepLearningDep
from services.ml_deep_learning.windows import Row
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import MARKET_READ
from shared.events import Name
from shared.kit.problems import Problem
from shared.ml.artifacts import ArtifactIntegrityError
from shared.ml.inference import Loaded, Refusal
from shared.ml.sequence import SEQUENCE_KINDS

router = APIRouter(prefix="/api/v1/predict", tags=["models"])

Reader = Annotated[Principal, require(MARKET_READ)]
FeatureRow = dict[Name, Annotated[float, Field(allow_inf_nan=False)] | None]


class WindowPredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    #: The model; or ``name``: that name's champion.
    model_id: uuid.UUID | None = None
    name: Name | None = None
    #: The model's ``window`` feature rows, oldest first, each the model's features in order.
    window: Annotated[list[FeatureRow], Field(min_length=1, max_length=4096)]


class WindowPrediction(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_id: uuid.UUID
    model_name: str
    model_version: int
    model_kind: str
    task: str
    horizon_bars: int
    score: float
    probability_up: float | None
    expected_return: float | None
    flagged: str | None


@router.post("", operation_id="predict_window", summary="One prediction from a sequence model and a window")
async def predict_once(body: WindowPredictRequest, service: MlDeepLearningDep, _: Reader) -> WindowPrediction:
    if (body.model_id is None) == (body.name is None):
        raise Problem(422, "model_id: give either model_id or name")
    if body.model_id is not None:
        record = await service.registry.get(body.model_id)
        if record is None:
            raise Problem(404, f"no model {body.model_id}")
    else:
        found = await service.registry.find(status="champion", name=body.name, kinds=SEQUENCE_KINDS, limit=1)
        if not found:
            raise Problem(404, f"no champion named {body.name}")
        record = found[0]
    if record.kind not in SEQUENCE_KINDS:
        raise Problem(422, f"model_id: a {record.kind} model; ml-supervised runs it")
    loaded = service.champions.loaded.get(record.id)
    if loaded is None:
        try:
            loaded = Loaded(record, service.registry.load(record))
        except ArtifactIntegrityError as exc:
            raise Problem(500, str(exc)) from None
    if len(body.window) != window_of(loaded):
        raise Problem(422, f"window: the model looks at {window_of(loaded)} rows, not {len(body.window)}")
    rows = [Row(i, uuid.UUID(int=0), tuple(r), tuple(r.values())) for i, r in enumerate(body.window)]
    try:
        out = predict_window(loaded, rows)
    except Refusal as refusal:
        raise Problem(422, f"window: {refusal.detail}", reason=refusal.reason) from None
    return WindowPrediction(
        model_id=record.id,
        model_name=record.name,
        model_version=record.version,
        model_kind=record.kind,
        task=record.task,
        horizon_bars=record.horizon_bars,
        score=out.score,
        probability_up=out.probability_up,
        expected_return=out.expected_return,
        flagged=record.flag_reason,
    )
