"""shared.ratelimit: an exact sliding window, driven by an injected clock."""

from __future__ import annotations

import pytest

from shared.ratelimit import Limit, SlidingWindowLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def limiter(clock: Clock, **kwargs) -> SlidingWindowLimiter:
    limits = kwargs.pop("limits", {"default": Limit(10, 1.0)})
    return SlidingWindowLimiter(limits, clock=clock, **kwargs)


def test_admits_up_to_the_safety_margin_then_says_how_long_to_wait(clock):
    rl = limiter(clock)
    assert rl.capacity() == 9
    assert [rl.acquire("c") for _ in range(9)] == [0.0] * 9
    assert rl.acquire("c") == pytest.approx(1.0)
    clock.advance(0.25)
    assert rl.acquire("c") == pytest.approx(0.75)


def test_a_refusal_records_nothing(clock):
    rl = limiter(clock)
    for _ in range(9):
        rl.acquire("c")
    for _ in range(100):
        assert rl.acquire("c") > 0
    clock.advance(1.0)
    assert [rl.acquire("c") for _ in range(9)] == [0.0] * 9


def test_the_window_slides_request_by_request(clock):
    rl = limiter(clock)
    for _ in range(3):
        rl.acquire("c")  # t = 0
    clock.advance(0.5)
    for _ in range(6):
        rl.acquire("c")  # t = 0.5
    clock.advance(0.1)
    assert rl.acquire("c") == pytest.approx(0.4)
    clock.advance(0.4)  # t = 1.0: the three from t = 0 have slid out, exactly
    assert [rl.acquire("c") for _ in range(3)] == [0.0] * 3
    assert rl.acquire("c") == pytest.approx(0.5)
    clock.advance(0.5)
    assert [rl.acquire("c") for _ in range(6)] == [0.0] * 6
    assert rl.acquire("c") == pytest.approx(0.5)


def test_the_wait_is_exact_just_before_the_edge(clock):
    rl = limiter(clock)
    for _ in range(9):
        rl.acquire("c")
    clock.advance(0.999)
    assert rl.acquire("c") == pytest.approx(0.001)
    clock.advance(0.001)
    assert rl.acquire("c") == 0.0


def test_capacity_is_floored_and_at_least_one(clock):
    assert limiter(clock, limits={"default": Limit(1, 1.0)}).capacity() == 1
    assert limiter(clock, limits={"default": Limit(90, 1.0)}, safety_margin=0.7).capacity() == 63
    assert limiter(clock, limits={"default": Limit(10, 1.0)}, safety_margin=1.0).capacity() == 10
    with pytest.raises(ValueError):
        Limit(0, 1.0)
    with pytest.raises(ValueError):
        limiter(clock, safety_margin=0)


def test_weights_count_and_the_wait_covers_enough_of_the_log(clock):
    rl = limiter(clock, limits={"default": Limit(100, 10.0)})  # capacity 90
    for _ in range(3):
        assert rl.acquire("c", weight=30) == 0.0
        clock.advance(1.0)  # admitted at 0, 1, 2 s
    # 50 more needs the first two entries (60) gone: the second leaves at 1 + 10 s, 7 s from now (t = 3).
    assert rl.acquire("c", weight=50) == pytest.approx(8.0)
    assert rl.acquire("c", weight=30) == pytest.approx(7.0)
    clock.advance(7.0)
    assert rl.acquire("c", weight=30) == 0.0
    with pytest.raises(ValueError):
        rl.acquire("c", weight=91)
    with pytest.raises(ValueError):
        rl.acquire("c", weight=0)


def test_keys_and_endpoints_are_independent(clock):
    rl = limiter(clock, limits={"default": Limit(10, 1.0), "orders": Limit(2, 1.0)})
    assert rl.acquire("a", "orders") == 0.0
    assert rl.acquire("a", "orders") > 0  # capacity floor(2 * 0.9) = 1
    assert rl.acquire("b", "orders") == 0.0
    assert all(rl.acquire("a") == 0.0 for _ in range(9))
    assert rl.acquire("a", "bars") > 0  # unlisted: shares the default window
    assert rl.acquire("b", "bars") == 0.0


def test_the_global_limit_spans_endpoints(clock):
    rl = limiter(clock, limits={"a": Limit(100, 1.0), "b": Limit(100, 1.0)}, global_limit=Limit(10, 2.0))
    for i in range(9):
        assert rl.acquire("c", "a" if i % 2 else "b") == 0.0
    assert rl.acquire("c", "a") == pytest.approx(2.0)  # the global window is the one refusing
    assert rl.acquire("other", "a") == 0.0
    clock.advance(1.0)
    assert rl.acquire("c", "b") == pytest.approx(1.0)


def test_the_longer_wait_wins_and_nothing_is_recorded_in_either_window(clock):
    rl = limiter(clock, limits={"default": Limit(2, 5.0)}, global_limit=Limit(10, 1.0))
    assert rl.acquire("c") == 0.0  # endpoint capacity 1, global 9
    assert rl.acquire("c") == pytest.approx(5.0)
    clock.advance(5.0)
    assert rl.acquire("c") == 0.0


def test_only_the_global_limit_applies_without_a_default(clock):
    rl = limiter(clock, limits={"orders": Limit(2, 1.0)}, global_limit=Limit(3, 1.0))
    assert rl.capacity("anything") is None
    assert [rl.acquire("c", "anything") for _ in range(2)] == [0.0, 0.0]
    assert rl.acquire("c", "anything") > 0


def test_idle_keys_are_dropped(clock):
    rl = limiter(clock)
    for i in range(50):
        rl.acquire(f"k{i}")
    assert len(rl) == 50
    clock.advance(1.5)  # longer than every window
    for _ in range(30):
        rl.acquire("active")
    assert len(rl) == 1


def test_tracked_keys_are_capped_least_recently_used_first(clock):
    rl = limiter(clock, max_keys=100)
    for _ in range(9):
        rl.acquire("hot")  # exhausts its quota
    for i in range(1000):
        rl.acquire(f"k{i}")
        if i % 50 == 0:
            assert rl.acquire("hot") > 0  # touched: kept, and still limited
    assert len(rl) == 100
