"""Message-rate limit: submits, modifies and cancels of one account within a window.

Built on the platform's one sliding-window limiter (``shared.ratelimit``), on the gate's injected
time rather than the wall clock. Accounts may have different limits, so there is one limiter per
distinct (messages, window) pair; an account whose limit changes starts a fresh window.
"""

from __future__ import annotations

from typing import Literal

from shared.ratelimit import Limit, SlidingWindowLimiter

MessageKind = Literal["submit", "modify", "cancel"]


class MessageRate:
    def __init__(self) -> None:
        self._limiters: dict[tuple[int, int], SlidingWindowLimiter] = {}
        self._now_s = 0.0

    def acquire(self, key: str, now_ns: int, max_messages: int, window_s: int) -> float:
        """Count one message of ``key`` at ``now_ns`` (0.0), or refuse it: the seconds until one fits."""
        limiter = self._limiters.get((max_messages, window_s))
        if limiter is None:
            limiter = self._limiters[(max_messages, window_s)] = SlidingWindowLimiter(
                # Submits, modifies and cancels share one window; exact capacity (no safety margin).
                {"default": Limit(max_messages, float(window_s))},
                safety_margin=1.0,
                clock=self._clock,
            )
        self._now_s = now_ns / 1e9
        return limiter.acquire(key)

    def _clock(self) -> float:
        return self._now_s


__all__ = ["MessageKind", "MessageRate"]
