"""Token buckets with an injected clock: burst, refill, Retry-After in whole seconds, one bucket per key."""

from __future__ import annotations

import pytest

from services.gateway.rate_limit import KeyedRateLimiter, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_allows_its_burst_then_says_how_long_to_wait():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    clock.now += 0.25
    assert bucket.take() == pytest.approx(0.25)  # a refused request takes nothing
    clock.now += 0.25
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.5)


def test_refill_never_exceeds_the_burst():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=1.0, burst=2, clock=clock)
    clock.now += 3600
    assert [bucket.take() == 0.0 for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_settings_that_could_never_admit_anyone_are_refused(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)
    with pytest.raises(ValueError):
        KeyedRateLimiter(rate * 60, burst)


def test_each_key_has_its_own_bucket_and_retry_after_is_whole_seconds():
    clock = FakeClock()
    limiter = KeyedRateLimiter(per_minute=6, burst=2, clock=clock)  # one token every 10 s
    assert [limiter.retry_after("alice") for _ in range(2)] == [0, 0]
    assert limiter.retry_after("alice") == 10
    assert limiter.retry_after("bob") == 0  # another key is not affected
    clock.now += 9.5
    assert limiter.retry_after("alice") == 1  # 0.5 s left: rounded up, never 0
    clock.now += 0.5
    assert limiter.retry_after("alice") == 0
    assert limiter.retry_after("alice") == 10
