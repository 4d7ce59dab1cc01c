"""Which models a signal waits for: the champions of a symbol and timeframe, from the model registry.

ai-orchestration does not own the registry (ml-supervised does, ``shared/ml/registry.py``); it
reads it through ``ModelCatalog``, and overlays what ``ModelLifecycle`` events said since
(``flagged``/``unflagged``, ``retired``), so a flag takes effect at the next bar, not at the
next catalog refresh.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from shared.events import ModelLifecycle, Timeframe
from shared.ml.registry import ModelRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Champion:
    """A model a signal expects a prediction from. ``flagged``: expired or drifted, not trusted."""

    model_id: uuid.UUID
    name: str
    version: int
    kind: str
    flagged: bool = False
    flag_reason: str | None = None


class ModelCatalog(Protocol):
    """The registry's view ai-orchestration needs (the lead wires ``shared/ml/registry.py`` to it)."""

    async def champions(self, symbol: str, timeframe: Timeframe) -> Sequence[Champion]:
        """The champion models serving ``symbol`` and ``timeframe``, flagged ones included."""
        ...


class RegistryCatalog:
    """The champions of the model registry (``shared/ml/registry.py``) serving a symbol and timeframe,
    of every kind (trees and sequence models alike)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    async def champions(self, symbol: str, timeframe: Timeframe) -> Sequence[Champion]:
        return [
            Champion(r.id, r.name, r.version, r.kind, flagged=r.flagged, flag_reason=r.flag_reason)
            for r in await self._registry.find(status="champion", kinds=None, limit=10_000)
            if symbol in r.symbols and r.timeframe == timeframe
        ]


class NoModels:
    """A catalog with no champions: signals come from the RSI rule alone."""

    async def champions(self, symbol: str, timeframe: Timeframe) -> Sequence[Champion]:
        return ()


class Champions:
    """The catalog's answers, cached per series and refreshed every ``refresh_s`` or on a lifecycle
    event, with the lifecycle events' flags laid over them."""

    def __init__(self, catalog: ModelCatalog, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._catalog = catalog
        self._refresh_s = refresh_s
        self._clock = clock
        self._cache: dict[tuple[str, Timeframe], tuple[float, Sequence[Champion]]] = {}
        #: model id -> reason, from ``flagged`` events; ``unflagged`` removes, ``retired`` ends trust too.
        self._flags: dict[uuid.UUID, str] = {}
        self._retired: set[uuid.UUID] = set()

    async def of(self, symbol: str, timeframe: Timeframe) -> list[Champion]:
        key = (symbol, timeframe)
        cached = self._cache.get(key)
        if cached is None or self._clock() - cached[0] > self._refresh_s:
            try:
                cached = (self._clock(), tuple(await self._catalog.champions(symbol, timeframe)))
            except Exception:  # the registry down: the last answer is better than none
                if cached is None:
                    raise
                log.exception("model catalog unavailable; using the champions of %s %s known", symbol, timeframe)
            else:
                self._cache[key] = cached
        out = []
        for champion in cached[1]:
            if champion.model_id in self._retired:
                continue
            reason = self._flags.get(champion.model_id)
            if reason is not None and not champion.flagged:
                champion = replace(champion, flagged=True, flag_reason=reason)
            out.append(champion)
        return out

    def apply(self, event: ModelLifecycle) -> None:
        """Lay a lifecycle event over the cache (and ask the catalog again at the next bar)."""
        if event.action == "flagged":
            self._flags[event.model_id] = event.reason or "flagged"
        elif event.action == "unflagged":
            self._flags.pop(event.model_id, None)
        elif event.action == "retired":
            self._retired.add(event.model_id)
        elif event.action == "promoted":
            self._retired.discard(event.model_id)
        self._cache.clear()

    def flagged_id(self, model_id: str) -> bool:
        """Whether a lifecycle event flagged the model of this id (text form) and none unflagged it since."""
        try:
            return uuid.UUID(model_id) in self._flags
        except ValueError:
            return False
