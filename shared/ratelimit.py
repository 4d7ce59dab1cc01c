"""Exact sliding-window rate limiting (a log of admitted requests per key and window).

Used on every gateway request, so a call is a few deque operations: each window
keeps ``(time, weight)`` of the requests it admitted and a running sum, drops what
slid out on each call, and only walks its log to compute a wait when it refuses.

    limiter = SlidingWindowLimiter({"default": Limit(100, 60.0), "orders": Limit(10, 1.0)},
                                   global_limit=Limit(300, 60.0))
    wait = limiter.acquire(client_id, "orders")   # 0.0 = go; else retry after ``wait`` seconds
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

DEFAULT_ENDPOINT = "default"


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``requests`` (total weight) in any ``window_s`` seconds."""

    requests: int
    window_s: float

    def __post_init__(self) -> None:
        if self.requests < 1 or not self.window_s > 0:
            raise ValueError(f"a limit needs requests >= 1 and window_s > 0, not {self}")


class _Window:
    """The admitted requests of one key in one window: ``(t, weight)`` log plus running sum."""

    __slots__ = ("capacity", "log", "span", "used")

    def __init__(self, capacity: int, span: float) -> None:
        self.capacity = capacity
        self.span = span
        self.log: deque[tuple[float, int]] = deque()
        self.used = 0

    def wait(self, now: float, weight: int) -> float:
        """0.0 if ``weight`` fits now, else the seconds until enough of the log slides out."""
        log = self.log
        horizon = now - self.span
        # An entry admitted at t counts during [t, t + span).
        while log and log[0][0] <= horizon:
            self.used -= log.popleft()[1]
        excess = self.used + weight - self.capacity
        if excess <= 0:
            return 0.0
        for t, w in log:
            excess -= w
            if excess <= 0:
                return t + self.span - now
        raise AssertionError("unreachable: weight <= capacity was checked on entry")

    def record(self, now: float, weight: int) -> None:
        self.log.append((now, weight))
        self.used += weight


class _KeyState:
    __slots__ = ("last_seen", "overall", "windows")

    def __init__(self) -> None:
        self.windows: dict[str, _Window] = {}
        self.overall: _Window | None = None
        self.last_seen = 0.0


class SlidingWindowLimiter:
    """Per-key limits per endpoint, plus an optional per-key limit across all endpoints.

    ``limits`` maps an endpoint name to its limit; endpoints not listed share the
    ``"default"`` entry's window, and if there is none only ``global_limit`` applies to them.
    Capacity is ``floor(requests * safety_margin)`` (at least 1), so a client of a
    remote API limited the same way stays clear of that API's own counter.

    Memory stays bounded: a key idle longer than the longest window holds nothing
    worth keeping and is dropped, and at most ``max_keys`` keys are tracked (the
    least recently used goes first).
    """

    def __init__(
        self,
        limits: Mapping[str, Limit],
        *,
        global_limit: Limit | None = None,
        safety_margin: float = 0.9,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if not 0 < safety_margin <= 1:
            raise ValueError("safety_margin must be in (0, 1]")
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self._margin = safety_margin
        self._limits = {name: self._shape(limit) for name, limit in limits.items()}
        self._global = self._shape(global_limit) if global_limit is not None else None
        spans = [span for _, span in self._limits.values()] + ([self._global[1]] if self._global else [])
        self._idle_after = max(spans, default=0.0)
        self._clock = clock
        self._max_keys = max_keys
        self._keys: OrderedDict[str, _KeyState] = OrderedDict()

    def _shape(self, limit: Limit) -> tuple[int, float]:
        # The epsilon keeps e.g. 90 * 0.7 = 62.99999999999999 from flooring to 62.
        return max(1, math.floor(limit.requests * self._margin + 1e-9)), float(limit.window_s)

    def capacity(self, endpoint: str = DEFAULT_ENDPOINT) -> int | None:
        """The effective capacity of ``endpoint``'s own limit (``None``: only the global limit applies)."""
        shape = self._limits.get(endpoint) or self._limits.get(DEFAULT_ENDPOINT)
        return shape[0] if shape else None

    def acquire(self, key: str, endpoint: str = DEFAULT_ENDPOINT, weight: int = 1) -> float:
        """Admit and record a request of ``weight`` for ``key`` (returns 0.0), or return the wait in seconds.

        A refused request records nothing. ``ValueError`` if ``weight`` could never fit.
        """
        now = self._clock()
        state = self._state(key, now)
        # Unlisted endpoints share the default window: a caller cannot multiply its
        # quota (or this table) by spreading over endpoint names nobody configured.
        name = endpoint if endpoint in self._limits else DEFAULT_ENDPOINT
        window = state.windows.get(name)
        if window is None and name in self._limits:
            window = state.windows[name] = _Window(*self._limits[name])
        overall = state.overall
        if overall is None and self._global is not None:
            overall = state.overall = _Window(*self._global)
        for w in (window, overall):
            if w is not None and not 1 <= weight <= w.capacity:
                raise ValueError(f"weight {weight} can never fit a capacity of {w.capacity}")
        wait = window.wait(now, weight) if window is not None else 0.0
        if overall is not None:
            wait = max(wait, overall.wait(now, weight))
        if wait > 0.0:
            return wait
        if window is not None:
            window.record(now, weight)
        if overall is not None:
            overall.record(now, weight)
        return 0.0

    def _state(self, key: str, now: float) -> _KeyState:
        keys = self._keys
        state = keys.get(key)
        if state is None:
            state = keys[key] = _KeyState()
            if len(keys) > self._max_keys:
                keys.popitem(last=False)
        else:
            keys.move_to_end(key)
        state.last_seen = now
        # The front of the LRU order is the longest idle: drop a few idle keys per call,
        # which keeps the sweep amortised O(1) and the table free of dead clients.
        for _ in range(2):
            oldest = next(iter(keys.values()))
            if now - oldest.last_seen <= self._idle_after:
                break
            keys.popitem(last=False)
        return state

    def __len__(self) -> int:
        """How many keys are tracked."""
        return len(self._keys)
