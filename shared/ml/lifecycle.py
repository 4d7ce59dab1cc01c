"""Model lifecycle: promotion, expiry and drift flags, each recorded in the registry and announced
as a ``ModelLifecycle`` event (after the registry change committed; its id derives from the change).

A flagged model stays champion (nothing better may exist yet); the event tells ai-orchestration to
stop trusting it until a retrained model is promoted. Flags are idempotent: a model already
flagged is not flagged (nor announced) again, so a redelivered drift event changes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence

from shared.bus.publish import BulkPublisher
from shared.events import FeatureDrift, ModelLifecycle
from shared.ml.registry import ModelRecord, ModelRegistry, Promotion, lifecycle_event

log = logging.getLogger(__name__)


class Lifecycle:
    """The lifecycle of the models of ``kinds`` (each model service runs one for its own kinds;
    ``actor`` names the service when it acts on its own, e.g. ``service:ml-supervised``)."""

    def __init__(
        self,
        registry: ModelRegistry,
        publisher: BulkPublisher[ModelLifecycle],
        kinds: Sequence[str],
        clock: Callable[[], dt.datetime],
        actor: str,
    ) -> None:
        self.registry = registry
        self.publisher = publisher
        self.kinds = tuple(kinds)
        self.clock = clock
        self.actor = actor

    async def registered(self, model: ModelRecord) -> None:
        """Announce a newly registered model."""
        await self.publisher.publish(
            [lifecycle_event(model, "registered", actor=model.created_by, at=model.created_at)]
        )

    async def promote(self, model_id: uuid.UUID, actor: str) -> Promotion:
        """Promote (``ModelNotFound``, ``ModelRetired``) and announce the retirement and the promotion."""
        promotion = await self.registry.promote(model_id, actor, self.clock())
        if promotion.changed:
            model = promotion.model
            assert model.promoted_at is not None
            events = [
                lifecycle_event(
                    old,
                    "retired",
                    actor=actor,
                    at=old.retired_at or model.promoted_at,
                    reason="replaced",
                    details={"replaced_by": str(model.id)},
                )
                for old in promotion.retired
            ]
            events.append(lifecycle_event(model, "promoted", actor=actor, at=model.promoted_at))
            await self.publisher.publish(events)
            log.info("%s promoted %s v%d (%s)", actor, model.name, model.version, model.id)
        return promotion

    async def flag(
        self, model_id: uuid.UUID, reason: str, details: dict[str, str | int | float | bool | None]
    ) -> ModelRecord | None:
        """Flag the model and announce it; ``None`` if it was flagged already (or is unknown)."""
        model = await self.registry.flag(model_id, reason, self.clock())
        if model is None:
            return None
        assert model.flagged_at is not None
        event = lifecycle_event(model, "flagged", actor=self.actor, at=model.flagged_at, reason=reason, details=details)
        await self.publisher.publish([event])
        log.warning("flagged %s v%d (%s): %s %s", model.name, model.version, model.id, reason, details)
        return model

    async def flag_expired(self) -> list[ModelRecord]:
        """Flag every model of this service's kinds past its expiry."""
        flagged = []
        for model in await self.registry.expired(self.clock()):
            if model.kind not in self.kinds:
                continue
            done = await self.flag(model.id, "expired", {"expires_at": model.expires_at.isoformat()})
            if done is not None:
                flagged.append(done)
        return flagged

    async def run_expiry_checks(self, interval_s: float) -> None:
        """Forever: flag the expired models, then wait ``interval_s``."""
        while True:
            await self.flag_expired()
            await asyncio.sleep(interval_s)

    async def on_drift(self, drift: FeatureDrift) -> ModelRecord | None:
        """Flag the model ``drift`` is about, if any feature drifted and the model is of this service's kinds."""
        if not drift.drifted:
            return None
        model = await self.registry.get(drift.model_id)
        if model is None or model.kind not in self.kinds:
            return None
        details: dict[str, str | int | float | bool | None] = {
            "threshold": drift.threshold,
            "drifted": ",".join(drift.drifted)[:500],
            "max_psi": max(drift.psi.values(), default=0.0),
            "symbol": drift.symbol,
            "drift_event_id": str(drift.event_id),
        }
        return await self.flag(model.id, "drift", details)


__all__ = ["Lifecycle"]
