"""Token buckets with an injected clock: burst, refill, Retry-After in whole seconds, one bucket per key;
per-client limits (concurrency, rate, failed attempts) in tables that stay bounded."""

from __future__ import annotations

import pytest

from services.gateway.rate_limit import (
    ClientLimiter,
    ClientTable,
    FailureThrottle,
    KeyedRateLimiter,
    TokenBucket,
)


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


# --- per-client tables: bounded memory ---------------------------------------------------------------------


class _State:
    def __init__(self) -> None:
        self.is_idle = False
        self.is_busy = False

    def idle(self) -> bool:
        return self.is_idle

    def busy(self) -> bool:
        return self.is_busy


def test_a_client_table_never_holds_more_than_its_size():
    table: ClientTable[_State] = ClientTable(_State, max_clients=100)
    for n in range(10_000):
        assert table.get(f"10.0.{n // 256}.{n % 256}") is not None
    assert len(table) == 100


def test_idle_clients_are_forgotten_before_any_other():
    table: ClientTable[_State] = ClientTable(_State, max_clients=1000)
    old = [table.get(f"old-{n}") for n in range(50)]
    for state in old:
        state.is_idle = True
    table.get("new")
    assert len(table) == 1 and table.peek("old-0") is None


def test_a_full_table_pushes_out_the_least_recent_client_not_in_flight():
    table: ClientTable[_State] = ClientTable(_State, max_clients=3)
    first, _, third = table.get("a"), table.get("b"), table.get("c")
    first.is_busy = True
    assert table.get("d") is not None
    assert table.peek("a") is first and table.peek("b") is None and table.peek("c") is third
    third.is_busy = True
    table.peek("d").is_busy = True
    assert table.get("e") is None  # everyone has a request in flight: nobody is forgotten
    assert len(table) == 3


def test_per_client_concurrency_is_bounded_and_released():
    limiter = ClientLimiter(per_minute=0, burst=1, max_concurrent=2, max_clients=10)
    assert limiter.admit("a") and limiter.admit("a")
    refused = limiter.admit("a")
    assert not refused and refused.retry_after == 1 and "2 requests at once" in refused.reason
    assert limiter.admit("b")  # another client is not affected
    limiter.release("a")
    assert limiter.admit("a")


def test_per_client_rate_with_retry_after_in_whole_seconds():
    clock = FakeClock()
    limiter = ClientLimiter(per_minute=6, burst=2, max_concurrent=0, max_clients=10, clock=clock)
    for _ in range(2):
        assert limiter.admit("a")
        limiter.release("a")
    refused = limiter.admit("a")
    assert refused.retry_after == 10 and "too many requests" in refused.reason
    assert limiter.admit("b")
    clock.now += 10
    assert limiter.admit("a")


def test_a_batch_costs_a_token_per_query_and_at_most_a_full_bucket():
    clock = FakeClock()
    limiter = ClientLimiter(per_minute=6, burst=4, max_concurrent=0, max_clients=10, clock=clock)
    assert limiter.admit("a")
    assert limiter.charge("a", 2)  # a batch of three: its first token at the door, two now; one left
    assert limiter.admit("a")
    refused = limiter.charge("a", 2)  # another batch of three: two more wanted, none left
    assert refused.retry_after == 20 and "too many searches" in refused.reason
    clock.now += 40  # full again
    assert limiter.charge("a", 9)  # more than the bucket holds costs the whole bucket, never a wait forever
    assert not limiter.admit("a")
    assert limiter.charge("b", 3)  # not admitted (no state kept): nothing to charge
    assert ClientLimiter(per_minute=0, burst=1, max_concurrent=2, max_clients=10).charge("a", 5)  # rate off


def test_clients_are_forgotten_once_their_bucket_is_full_again():
    clock = FakeClock()
    limiter = ClientLimiter(per_minute=60, burst=5, max_concurrent=4, max_clients=1000, clock=clock)
    for n in range(500):
        assert limiter.admit(f"c{n}")
        limiter.release(f"c{n}")
    assert len(limiter) == 500
    clock.now += 5  # 5 tokens at 1 per second: every bucket is full, nothing is in flight
    assert limiter.admit("late")
    assert len(limiter) == 1


def test_a_client_with_requests_in_flight_is_not_forgotten():
    clock = FakeClock()
    limiter = ClientLimiter(per_minute=0, burst=1, max_concurrent=1, max_clients=2, clock=clock)
    assert limiter.admit("a")
    assert limiter.admit("b")
    assert not limiter.admit("c")  # the table is full of clients in flight
    assert not limiter.admit("a")  # a still holds its one slot
    limiter.release("b")
    assert limiter.admit("c")


def test_settings_off_admit_everyone():
    limiter = ClientLimiter(per_minute=0, burst=1, max_concurrent=0, max_clients=1)
    assert not limiter.enabled
    assert all(limiter.admit("a") for _ in range(1000))


def test_failed_attempts_throttle_one_client_until_the_window_refills():
    clock = FakeClock()
    throttle = FailureThrottle(max_failures=3, window_s=60, max_clients=100, clock=clock)
    assert throttle.retry_after("a") == 0
    assert [throttle.failed("a") for _ in range(3)] == [False, False, True]  # True: now throttled
    assert throttle.retry_after("a") == 20  # one more attempt every 60 / 3 s
    assert throttle.retry_after("b") == 0
    clock.now += 20
    assert throttle.retry_after("a") == 0
    assert throttle.failed("a") is True
    assert throttle.retry_after("a") == 20
    assert len(FailureThrottle(0, 60, 10)) == 0 and FailureThrottle(0, 60, 10).failed("a") is False


def test_failure_tables_stay_bounded():
    throttle = FailureThrottle(max_failures=3, window_s=60, max_clients=50)
    for n in range(5000):
        throttle.failed(f"guesser-{n}")
    assert len(throttle) == 50
