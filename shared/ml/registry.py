"""The model registry: every trained model's description in PostgreSQL (``ml.models``), its
artifact under ``<HATS_VAR_DIR>/models/`` (``ArtifactStore``).

Versions count per name from 1. A model is a ``candidate`` when registered; promotion makes it
the ``champion`` of its slot (its name, symbols, timeframe and task) and retires the champion it
replaces, in one transaction under a per-slot lock (a partial unique index backs it up). A
``retired`` model cannot be promoted again. A flag (``expired``, ``drift``) leaves the status as
it is: the lifecycle event tells ai-orchestration to stop trusting the model.

Loading an artifact checks its sha256 first (``ArtifactIntegrityError``: never loaded).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict

from shared.events import EVENT_NAMESPACE, ModelLifecycle, Timeframe, now_ns
from shared.ml.artifacts import ArtifactStore
from shared.ml.drift import Distribution
from shared.ml.kinds import Task, Trained, kind_of

Status = Literal["candidate", "champion", "retired"]


class ModelRecord(BaseModel):
    """One registered model (a row of ``ml.models``); ``GET /api/v1/models/{id}`` shows it."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    id: uuid.UUID
    name: str
    version: int
    kind: str
    task: Task
    horizon_bars: int
    symbols: list[str]
    timeframe: Timeframe
    feature_set: str
    features: list[str]
    train_start: dt.datetime
    train_end: dt.datetime
    labelling: dict[str, Any]
    hyperparameters: dict[str, Any]
    seed: int
    metrics: dict[str, Any]
    score_scale: float
    data_fingerprint: str
    training_rows: int
    artifact_path: str
    artifact_sha256: str
    feature_distributions: dict[str, Distribution]
    status: Status
    created_at: dt.datetime
    created_by: str
    promoted_by: str | None
    promoted_at: dt.datetime | None
    retired_at: dt.datetime | None
    expires_at: dt.datetime
    flag_reason: str | None
    flagged_at: dt.datetime | None
    job_id: uuid.UUID | None

    @property
    def flagged(self) -> bool:
        return self.flag_reason is not None


@dataclass(frozen=True)
class NewModel:
    """What registering a model needs (the registry adds id, version, status and times)."""

    name: str
    kind: str
    task: Task
    horizon_bars: int
    symbols: Sequence[str]
    timeframe: Timeframe
    feature_set: str
    features: Sequence[str]
    train_start: dt.datetime
    train_end: dt.datetime
    labelling: dict[str, Any]
    hyperparameters: dict[str, Any]
    seed: int
    metrics: dict[str, Any]
    score_scale: float
    data_fingerprint: str
    training_rows: int
    feature_distributions: dict[str, Distribution]
    created_by: str
    expires_at: dt.datetime
    job_id: uuid.UUID | None = None


class ModelNotFound(LookupError):
    """No model has that id."""


class ModelRetired(RuntimeError):
    """A retired model cannot be promoted."""


@dataclass(frozen=True)
class Promotion:
    """The promoted model and the champion it replaced (now retired), if any."""

    model: ModelRecord
    retired: list[ModelRecord]
    #: False when the model already was the champion (nothing changed).
    changed: bool


_JSON_COLUMNS = ("labelling", "hyperparameters", "metrics", "feature_distributions")


def _record(row: asyncpg.Record) -> ModelRecord:
    values = dict(row)
    for column in _JSON_COLUMNS:
        values[column] = json.loads(values[column])
    return ModelRecord.model_validate(values)


def _slot_lock(name: str, timeframe: str, task: str, symbols: Sequence[str]) -> str:
    return "ml.models slot|" + "|".join([name, timeframe, task, *symbols])


class ModelRegistry:
    """The registry on a PostgreSQL pool (the ``model-registry`` migration set applied) and an artifact store."""

    def __init__(self, pool: asyncpg.Pool, artifacts: ArtifactStore) -> None:
        self.pool = pool
        self.artifacts = artifacts

    async def register(self, new: NewModel, artifact: bytes) -> ModelRecord:
        """Store ``artifact`` and the model's row as the next version of its name (a candidate)."""
        suffix = kind_of(new.kind).suffix
        model_id = uuid.uuid4()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "ml.models name|" + new.name)
            version = await conn.fetchval(
                "SELECT coalesce(max(version), 0) + 1 FROM ml.models WHERE name = $1", new.name
            )
            relative = f"{new.name}/{new.name}-v{version}-{model_id.hex[:8]}{suffix}"
            sha = self.artifacts.write(relative, artifact)
            row = await conn.fetchrow(
                """INSERT INTO ml.models (id, name, version, kind, task, horizon_bars, symbols, timeframe,
                       feature_set, features, train_start, train_end, labelling, hyperparameters, seed, metrics,
                       score_scale, data_fingerprint, training_rows, artifact_path, artifact_sha256,
                       feature_distributions, created_by, expires_at, job_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
                       $20, $21, $22, $23, $24, $25)
                   RETURNING *""",
                model_id,
                new.name,
                version,
                new.kind,
                new.task,
                new.horizon_bars,
                list(new.symbols),
                new.timeframe.value,
                new.feature_set,
                list(new.features),
                new.train_start,
                new.train_end,
                json.dumps(new.labelling),
                json.dumps(new.hyperparameters),
                new.seed,
                json.dumps(new.metrics),
                new.score_scale,
                new.data_fingerprint,
                new.training_rows,
                relative,
                sha,
                json.dumps({k: d.model_dump() for k, d in new.feature_distributions.items()}),
                new.created_by,
                new.expires_at,
                new.job_id,
            )
        return _record(row)

    async def get(self, model_id: uuid.UUID) -> ModelRecord | None:
        row = await self.pool.fetchrow("SELECT * FROM ml.models WHERE id = $1", model_id)
        return None if row is None else _record(row)

    async def latest(self, name: str) -> ModelRecord | None:
        """The highest version of ``name``."""
        row = await self.pool.fetchrow("SELECT * FROM ml.models WHERE name = $1 ORDER BY version DESC LIMIT 1", name)
        return None if row is None else _record(row)

    async def find(
        self,
        *,
        status: Status | None = None,
        kinds: Sequence[str] | None = None,
        name: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ModelRecord]:
        """Models matching every filter given, newest first."""
        rows = await self.pool.fetch(
            """SELECT * FROM ml.models
               WHERE ($1::text IS NULL OR status = $1) AND ($2::text[] IS NULL OR kind = ANY($2))
                 AND ($3::text IS NULL OR name = $3)
               ORDER BY created_at DESC, name, version DESC LIMIT $4 OFFSET $5""",
            status,
            None if kinds is None else list(kinds),
            name,
            limit,
            offset,
        )
        return [_record(r) for r in rows]

    async def promote(self, model_id: uuid.UUID, actor: str, at: dt.datetime) -> Promotion:
        """Make the model its slot's champion, retiring the previous one, atomically."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM ml.models WHERE id = $1", model_id)
            if row is None:
                raise ModelNotFound(str(model_id))
            model = _record(row)
            slot = _slot_lock(model.name, model.timeframe.value, model.task, model.symbols)
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", slot)
            model = _record(await conn.fetchrow("SELECT * FROM ml.models WHERE id = $1 FOR UPDATE", model_id))
            if model.status == "retired":
                raise ModelRetired(f"{model.name} v{model.version} is retired")
            if model.status == "champion":
                return Promotion(model, [], changed=False)
            retired = await conn.fetch(
                """UPDATE ml.models SET status = 'retired', retired_at = $5
                   WHERE name = $1 AND timeframe = $2 AND task = $3 AND symbols = $4 AND status = 'champion'
                   RETURNING *""",
                model.name,
                model.timeframe.value,
                model.task,
                model.symbols,
                at,
            )
            promoted = await conn.fetchrow(
                """UPDATE ml.models SET status = 'champion', promoted_by = $2, promoted_at = $3
                   WHERE id = $1 RETURNING *""",
                model_id,
                actor,
                at,
            )
        return Promotion(_record(promoted), [_record(r) for r in retired], changed=True)

    async def flag(self, model_id: uuid.UUID, reason: str, at: dt.datetime) -> ModelRecord | None:
        """Flag the model (``expired``, ``drift``); ``None`` if it is unknown or already flagged (idempotent)."""
        row = await self.pool.fetchrow(
            """UPDATE ml.models SET flag_reason = $2, flagged_at = $3
               WHERE id = $1 AND flag_reason IS NULL RETURNING *""",
            model_id,
            reason,
            at,
        )
        return None if row is None else _record(row)

    async def expired(self, now: dt.datetime) -> list[ModelRecord]:
        """Models in use (candidates and champions) past ``expires_at`` and not flagged yet."""
        rows = await self.pool.fetch(
            """SELECT * FROM ml.models WHERE status <> 'retired' AND flag_reason IS NULL AND expires_at <= $1
               ORDER BY expires_at""",
            now,
        )
        return [_record(r) for r in rows]

    async def champions(self, kinds: Sequence[str]) -> list[ModelRecord]:
        return await self.find(status="champion", kinds=kinds, limit=10_000)

    def load(self, model: ModelRecord, threads: int = 1) -> Trained:
        """The model, ready to predict, after checking its artifact's sha256 (``ArtifactIntegrityError``)."""
        data = self.artifacts.read(model.artifact_path, model.artifact_sha256)
        return kind_of(model.kind).load(model.task, data, threads)


def lifecycle_event(
    model: ModelRecord,
    action: Literal["registered", "promoted", "retired", "flagged", "unflagged"],
    *,
    actor: str,
    at: dt.datetime,
    reason: str | None = None,
    details: dict[str, str | int | float | bool | None] | None = None,
) -> ModelLifecycle:
    """The ``ModelLifecycle`` event of a registry change; its id is derived from the change (model,
    action, reason, time), so publishing it again is the same event."""
    at_ns = int(at.timestamp() * 1_000_000) * 1000
    return ModelLifecycle(
        event_id=uuid.uuid5(EVENT_NAMESPACE, f"model-lifecycle|{model.id}|{action}|{reason}|{at_ns}"),
        ts_event=at_ns,
        ts_init=now_ns(),
        model_id=model.id,
        model_name=model.name,
        model_version=model.version,
        model_kind=model.kind,
        action=action,
        status=model.status,
        reason=reason,
        actor=actor,
        details=details or {},
    )


__all__ = [
    "ModelNotFound",
    "ModelRecord",
    "ModelRegistry",
    "ModelRetired",
    "NewModel",
    "Promotion",
    "Status",
    "lifecycle_event",
]
