"""ml-supervised's HTTP API: ``/api/v1/models`` (training jobs, the registry, promotion) and
``/api/v1/predict`` (ad-hoc predictions). Reads need ``market:read``; training and promotion ``admin``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.ml_supervised.inference import Loaded, Refusal, predict
from services.ml_supervised.state import MlSupervised, MlSupervisedDep
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import ADMIN, MARKET_READ
from shared.events import Name
from shared.kit.problems import Problem
from shared.ml.artifacts import ArtifactIntegrityError
from shared.ml.kinds import kind_of
from shared.ml.registry import ModelNotFound, ModelRecord, ModelRetired
from shared.ml.sequence import SEQUENCE_KINDS, sequence_hyperparameters
from shared.ml.training import TrainSpec
from shared.ml.trees import TREE_KINDS

router = APIRouter(prefix="/api/v1/models", tags=["models"])
predict_router = APIRouter(prefix="/api/v1/predict", tags=["models"])

Reader = Annotated[Principal, require(MARKET_READ)]
Admin = Annotated[Principal, require(ADMIN)]


class JobAccepted(BaseModel):
    job_id: uuid.UUID
    status_url: str


#: Every kind a job may ask for: the trees trained here, the sequence kinds by ml-deep-learning
#: (whose runner claims their jobs from the same queue).
KINDS = TREE_KINDS + SEQUENCE_KINDS


def _checked(spec: TrainSpec) -> TrainSpec:
    """Beyond the spec's own validation: a known kind, hyperparameters that kind knows (checked
    without loading torch here: ``shared.ml.sequence``)."""
    if spec.kind not in KINDS:
        raise Problem(422, f"kind: {spec.kind!r} is not a model kind (one of {', '.join(KINDS)})")
    try:
        if spec.kind in SEQUENCE_KINDS:
            sequence_hyperparameters(spec.hyperparameters)
        else:
            kind_of(spec.kind).hyperparameters(spec.hyperparameters)
    except ValueError as exc:
        raise Problem(422, f"hyperparameters.{exc}") from None
    return spec


async def _queue(service: MlSupervised, spec: TrainSpec, principal: Principal) -> JobAccepted:
    job_id = await service.jobs.create(_checked(spec), principal.subject)
    service.runner.wake()
    return JobAccepted(job_id=job_id, status_url=f"/api/v1/models/jobs/{job_id}")


@router.post("/train", status_code=202, operation_id="train_model", summary="Queue a training job")
async def train(spec: TrainSpec, service: MlSupervisedDep, principal: Admin) -> JobAccepted:
    """Answers at once with the job's id; ``GET /api/v1/models/jobs/{id}`` follows it."""
    return await _queue(service, spec, principal)


@router.get("/jobs/{job_id}", operation_id="training_job", summary="A training job's stage, progress and result")
async def job(job_id: uuid.UUID, service: MlSupervisedDep, _: Reader) -> dict[str, Any]:
    view = await service.jobs.view(job_id)
    if view is None:
        raise Problem(404, f"no training job {job_id}")
    return view


@router.get("", operation_id="list_models", summary="Registered models, newest first")
async def list_models(
    service: MlSupervisedDep,
    _: Reader,
    status: Literal["candidate", "champion", "retired"] | None = None,
    kind: Name | None = None,
    name: Name | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[ModelRecord]:
    return await service.registry.find(
        status=status, kinds=None if kind is None else [kind], name=name, limit=limit, offset=offset
    )


async def _model(service: MlSupervised, model_id: uuid.UUID) -> ModelRecord:
    model = await service.registry.get(model_id)
    if model is None:
        raise Problem(404, f"no model {model_id}")
    return model


@router.get("/{model_id}", operation_id="get_model", summary="One registered model")
async def get_model(model_id: uuid.UUID, service: MlSupervisedDep, _: Reader) -> ModelRecord:
    return await _model(service, model_id)


@router.post("/{model_id}/promote", operation_id="promote_model", summary="Make a model its slot's champion")
async def promote(model_id: uuid.UUID, service: MlSupervisedDep, principal: Admin) -> ModelRecord:
    """Retires the champion it replaces; both changes are announced on ``ml.models.v1``."""
    await _model(service, model_id)
    # Any kind: the registry is shared; the service running the kind reloads on the event.
    try:
        promotion = await service.lifecycle.promote(model_id, principal.subject)
    except ModelNotFound:
        raise Problem(404, f"no model {model_id}") from None
    except ModelRetired as exc:
        raise Problem(409, f"{exc}: retrain it instead") from None
    await service.champions.reload()
    return promotion.model


class Retrain(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The new window's end (default: now); its length is the model's training window's.
    end: dt.datetime | None = None


@router.post(
    "/{model_id}/retrain", status_code=202, operation_id="retrain_model", summary="Train it again on newer data"
)
async def retrain(
    model_id: uuid.UUID, service: MlSupervisedDep, principal: Admin, body: Retrain | None = None
) -> JobAccepted:
    """The same spec (kind, task, horizon, labelling, hyperparameters, seed, folds) on a window of
    the same length ending at ``end`` (default now): the result is the name's next version."""
    model = await _model(service, model_id)
    end = (body.end if body is not None else None) or service.clock()
    if end.tzinfo is None:
        raise Problem(422, "end: needs a time zone (UTC: ...Z)")
    metrics = model.metrics
    try:
        spec = TrainSpec(
            name=model.name,
            kind=model.kind,
            task=model.task,
            symbols=model.symbols,
            timeframe=model.timeframe,
            start=end - (model.train_end - model.train_start),
            end=end,
            horizon_bars=model.horizon_bars,
            labelling=model.labelling,  # type: ignore[arg-type]  # validated into Labelling
            hyperparameters=model.hyperparameters,
            folds=max(1, len(metrics.get("folds", ()))),
            embargo_bars=metrics.get("embargo_bars"),
            past_only=metrics.get("past_only", True),
            seed=model.seed,
        )
    except ValidationError as exc:
        raise Problem(422, f"end: {exc.errors()[0]['msg']}") from None
    return await _queue(service, spec, principal)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    #: The model; or ``name``: that name's champion.
    model_id: uuid.UUID | None = None
    name: Name | None = None
    #: A row model's input.
    features: dict[Name, Annotated[float, Field(allow_inf_nan=False)] | None] | None = None
    #: A sequence model's input: its ``window`` feature rows, oldest first (answered by ml-deep-learning).
    window: list[dict[Name, Annotated[float, Field(allow_inf_nan=False)] | None]] | None = None


class PredictAnswer(BaseModel):
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


@predict_router.post(
    "", operation_id="predict", summary="One prediction from a model and a feature dict", response_model=PredictAnswer
)
async def predict_once(body: PredictRequest, request: Request, service: MlSupervisedDep, _: Reader) -> Any:
    """A tree model answers here; a sequence model's request (``window``) is forwarded to
    ml-deep-learning with the caller's token, and its answer returned as it is."""
    if (body.model_id is None) == (body.name is None):
        raise Problem(422, "model_id: give either model_id or name")
    if body.model_id is not None:
        record = await _model(service, body.model_id)
    else:
        found = await service.registry.find(status="champion", name=body.name, limit=1)
        if not found:
            raise Problem(404, f"no champion named {body.name}")
        record = found[0]
    if record.kind in SEQUENCE_KINDS:
        return await _forward(service, request, record, body)
    if record.kind not in TREE_KINDS:
        raise Problem(422, f"model_id: a {record.kind} model; ask the service that runs it")
    if body.features is None:
        raise Problem(422, "features: a feature dict is what a tree model predicts from")
    loaded = service.champions.loaded.get(record.id)
    if loaded is None:
        try:
            loaded = Loaded(record, service.registry.load(record))
        except ArtifactIntegrityError as exc:
            raise Problem(500, str(exc)) from None
    try:
        out = predict(loaded, body.features)
    except Refusal as refusal:
        raise Problem(422, f"features: {refusal.detail}", reason=refusal.reason) from None
    return PredictAnswer(
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


async def _forward(service: MlSupervised, request: Request, record: ModelRecord, body: PredictRequest) -> Response:
    if body.window is None:
        raise Problem(422, f"window: a {record.kind} model predicts from a window of feature rows")
    payload = {"model_id": str(record.id), "window": body.window}
    try:
        answer = await service.http.post(
            service.deep_url + "/api/v1/predict",
            json=payload,
            headers={"Authorization": request.headers.get("authorization", "")},
        )
    except httpx.HTTPError as exc:
        raise Problem(503, f"ml-deep-learning is unreachable: {type(exc).__name__}") from None
    return Response(answer.content, answer.status_code, media_type=answer.headers.get("content-type"))
