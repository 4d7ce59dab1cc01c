"""A model's training distributions, as the validator's drift check needs them.

The distributions and the population stability index are ``shared.ml.drift``'s, the ones the
model registry records at training (quantile bins and the share of training rows per bin), so
training and the live check cannot cut the bins differently. ``RegistryDistributions`` reads
them from the registry; tests give their own ``TrainingDistributions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

import numpy as np

from shared.ml import drift
from shared.ml.drift import Distribution
from shared.ml.registry import ModelRegistry


@dataclass(frozen=True)
class TrainingDistribution:
    """One model's training inputs, per feature."""

    model_id: UUID
    model_name: str
    model_version: int
    features: dict[str, Distribution]


class TrainingDistributions(Protocol):
    """Where the validator finds a model's training distribution (the model registry)."""

    async def of(self, model_id: UUID) -> TrainingDistribution | None: ...


class NoDistributions:
    async def of(self, model_id: UUID) -> TrainingDistribution | None:
        return None


class RegistryDistributions:
    """The training distributions the model registry keeps with each model (a model does not change:
    read once, kept)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry
        self._known: dict[UUID, TrainingDistribution | None] = {}

    async def of(self, model_id: UUID) -> TrainingDistribution | None:
        if model_id not in self._known:
            record = await self._registry.get(model_id)
            self._known[model_id] = (
                None
                if record is None
                else TrainingDistribution(record.id, record.name, record.version, dict(record.feature_distributions))
            )
        return self._known[model_id]


def psi(distribution: Distribution, values: Sequence[float]) -> float:
    """The PSI of ``values`` against ``distribution`` (``values`` must not be empty)."""
    return drift.psi(distribution, np.asarray(values, dtype=np.float64))


__all__ = ["NoDistributions", "RegistryDistributions", "TrainingDistribution", "TrainingDistributions", "psi"]
